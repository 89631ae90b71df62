"""Graceful shutdown: on SIGTERM the gateway stops accepting, lets open streams finish up to the
``server.shutdown_timeout`` deadline, and writes every usage record before it exits."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway
from conftest import test_config as gateway_config
from deployments import V, dep, hello, model, provider, sse_events, stream_chunks
from fakeupstream import Answer, FakeUpstream, Received


def start(fake: FakeUpstream, d: Path, shutdown_timeout: float | None) -> Gateway:
    cfg = gateway_config(fake.url, d / "bytespike.db",
                         extra_providers={"slow": provider(f"{fake.url}/slow", "slow")},
                         extra_models={"slow-model": model(dep("slow", "slow-model"))})
    if shutdown_timeout is not None:
        cfg["server"] = {"shutdown_timeout": shutdown_timeout}
    return Gateway(d, cfg).start()


def slow_streams(fake: FakeUpstream, parts: int, gap: float) -> None:
    def handler(r: Received) -> Answer | None:
        if "/slow/" in r.path:
            return Answer(chunks=stream_chunks([f"w{i} " for i in range(parts)], input_tokens=20, output_tokens=parts),
                          delay_between=gap, content_type="text/event-stream; charset=utf-8")
        return None

    fake.handler = handler


async def open_streams(gw: Gateway, key: str, n: int) -> tuple[list[asyncio.Task[Any]], list[str]]:
    """``n`` streams, returned once every one has its response headers (so is open at the gateway)."""
    ids: list[str] = []
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=n + 10), timeout=60)

    async def one() -> tuple[int, bytes]:
        async with client.stream("POST", gw.url + "/v1/messages", headers={**V, "x-api-key": key},
                                 json=hello("slow-model", stream=True)) as r:
            ids.append(r.headers["request-id"])
            body = b""
            try:
                async for chunk in r.aiter_bytes():
                    body += chunk
            except httpx.HTTPError:  # the connection closed under us: judged by what arrived
                pass
            return r.status_code, body

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    deadline = time.monotonic() + 30
    while len(ids) < n:
        assert time.monotonic() < deadline, f"only {len(ids)} of {n} streams opened"
        assert not any(t.done() for t in tasks), [t.result() for t in tasks if t.done()]
        await asyncio.sleep(0.05)
    tasks.append(asyncio.create_task(_close_later(client, tasks[:])))
    return tasks, ids


async def _close_later(client: httpx.AsyncClient, tasks: list[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.aclose()


def wait_exit(gw: Gateway, timeout: float) -> float:
    assert gw.proc is not None
    t = time.monotonic()
    while gw.proc.poll() is None:
        assert time.monotonic() - t < timeout, "the gateway did not exit"
        time.sleep(0.05)
    return time.monotonic() - t


def refused(gw: Gateway) -> bool:
    try:
        httpx.get(gw.url + "/healthz", timeout=2)
    except httpx.ConnectError:
        return True
    return False


async def test_sigterm_lets_50_open_streams_finish_and_writes_all_50_usage_records(fake: FakeUpstream,
                                                                                  tmp_path: Path):
    gw = start(fake, tmp_path, None)  # the default deadline, 30 s
    try:
        acct = gw.account(usd="100")
        slow_streams(fake, parts=16, gap=0.25)  # about 4 s each
        tasks, ids = await open_streams(gw, acct["key"], 50)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert await asyncio.to_thread(refused, gw), "still accepting after SIGTERM"
        results = (await asyncio.gather(*tasks))[:50]
        took = await asyncio.to_thread(wait_exit, gw, 30)
    finally:
        gw.stop()
    assert took < 10
    for status, body in results:
        events = sse_events(body.decode())
        assert status == 200
        assert [e for e, _ in events].count("content_block_delta") == 16
        assert events[-1][0] == "message_stop"
        assert "error" not in [e for e, _ in events]
    assert len(set(ids)) == 50
    marks = ",".join("?" * 50)
    rows = gw.query(f"SELECT status, output_tokens, cost FROM usage_records WHERE request_id IN ({marks})", *ids)
    assert len(rows) == 50
    assert all(status == "succeeded" and out == 16 and cost > 0 for status, out, cost in rows)
    assert gw.query(f"SELECT COUNT(*) FROM ledger WHERE kind = 'charge' AND request_id IN ({marks})", *ids)[0][0] == 50
    assert gw.query(f"SELECT COUNT(*) FROM holds WHERE id IN ({marks})", *ids)[0][0] == 0


async def test_streams_still_open_at_the_deadline_end_with_an_error_and_are_recorded_unbilled(
        fake: FakeUpstream, tmp_path: Path):
    gw = start(fake, tmp_path, 1.0)
    try:
        acct = gw.account(usd="100")
        slow_streams(fake, parts=40, gap=0.25)  # about 10 s each: longer than the 1 s deadline
        tasks, ids = await open_streams(gw, acct["key"], 10)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        took = await asyncio.to_thread(wait_exit, gw, 15)
        results = (await asyncio.gather(*tasks))[:10]
    finally:
        gw.stop()
    assert took < 4
    for status, body in results:
        assert status == 200
        events = sse_events(body.decode())
        assert events[0][0] == "message_start"
        assert "message_stop" not in [e for e, _ in events]
        assert events[-1][0] == "error"
        assert events[-1][1]["error"]["type"] == "overloaded_error"
    marks = ",".join("?" * 10)
    rows = gw.query(f"SELECT status, error_type, cost FROM usage_records WHERE request_id IN ({marks})", *ids)
    assert sorted(rows) == [("failed", "shutdown", 0)] * 10
    assert gw.query(f"SELECT COUNT(*) FROM ledger WHERE kind = 'charge' AND request_id IN ({marks})", *ids)[0][0] == 0
    assert gw.query(f"SELECT COUNT(*) FROM holds WHERE id IN ({marks})", *ids)[0][0] == 0


@pytest.fixture(autouse=True)
def _no_leftover_handler(fake: FakeUpstream) -> None:
    fake.handler = None
