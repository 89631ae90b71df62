"""Several ``bytespike serve`` instances on one PostgreSQL (and optionally one Redis), as a team runs them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from conftest import Gateway, run_async, test_config

V = {"anthropic-version": "2023-06-01"}
# A model whose every input-side price is the same, so an answer can cost exactly its hold.
EXACT_MODEL = {"claude-exact": {"price": {"input": 1, "output": 5, "cache_write": 1, "cache_write_1h": 1,
                                          "cache_read": 1},
                                "deployments": [{"provider": "anthropic", "model": "claude-haiku-4-5"}]}}


def cluster_config(fake_url: str, db_url: str, redis_url: str | None) -> dict[str, Any]:
    cfg = test_config(fake_url, Path("unused.db"), extra_models=EXACT_MODEL)
    cfg["database_url"] = db_url
    cfg["redis_url"] = redis_url
    return cfg


class PgGateway(Gateway):
    """A gateway whose database is PostgreSQL: ``query`` takes the same ``?`` placeholders."""

    def query(self, sql: str, *params: Any) -> list[tuple]:
        n = iter(range(1, 1000))
        pg_sql = re.sub(r"\?", lambda _: f"${next(n)}", sql)
        dsn = self.db_url

        async def go() -> list[tuple]:
            conn = await asyncpg.connect(dsn)
            try:
                return [tuple(r) for r in await conn.fetch(pg_sql, *params)]
            finally:
                await conn.close()

        return run_async(go())


def start_cluster(root: Path, cfg: dict[str, Any], n: int, env: dict[str, str]) -> list[PgGateway]:
    gws = [PgGateway(root / f"gw{i}", cfg, env) for i in range(n)]
    gws[0].start()
    for gw in gws[1:]:
        gw.start(migrate=False)
    return gws


def message(max_tokens: int = 20, model: str = "claude-exact", stream: bool = False) -> bytes:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens,
                            "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def anthropic_answer(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"id": "msg_cluster", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


async def _post_all(urls: list[str], key: str, body: bytes, timeout: float) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        return await asyncio.gather(*[
            client.post(u + "/v1/messages", content=body,
                        headers={**V, "x-api-key": key, "content-type": "application/json"}) for u in urls])


def post_all(urls: list[str], key: str, body: bytes, timeout: float = 60) -> list[httpx.Response]:
    """POST ``body`` once to each URL in ``urls``, all at once."""
    return run_async(_post_all(urls, key, body, timeout))


def post(url: str, key: str, body: bytes, timeout: float = 30) -> httpx.Response:
    return httpx.post(url + "/v1/messages", content=body, timeout=timeout,
                      headers={**V, "x-api-key": key, "content-type": "application/json"})
