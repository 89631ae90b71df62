"""Shared fixtures: a fake upstream on loopback and a real gateway process in front of it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bytespike.accounts import keys as auth
from bytespike.billing import money
from bytespike.store.accounts import Accounts
from bytespike.store.db import Database, upgrade
from fakeupstream import FakeUpstream

pytest_plugins = ["support.services"]

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "tests" / "fixtures" / "recorded"
BUILTIN = ROOT / "src" / "bytespike" / "defaults.yaml"
ADMIN_TOKEN = "test-admin-token-" + "x" * 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_async(coro: Any) -> Any:
    """Run a coroutine to completion from sync or async test code alike."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_config(fake_url: str, db_path: Path, extra_models: dict | None = None,
                extra_providers: dict | None = None) -> dict:
    """The built-in catalogue, every provider pointed at the fake upstream."""
    cfg = yaml.safe_load(BUILTIN.read_text())
    cfg["database_url"] = f"sqlite:///{db_path}"
    cfg["redis_url"] = None
    cfg["admin_token"] = ADMIN_TOKEN
    for name, p in cfg["providers"].items():
        p["base_url"] = f"{fake_url}/{name}"
        p["api_key"] = f"upstream-secret-{name}"
    # gpt-5-5 through Chat Completions (the built-in catalogue serves it through the Responses API).
    cfg["models"]["gpt-5-5-chat"] = {**cfg["models"]["gpt-5-5"], "display_name": "GPT-5.5 (Chat Completions)",
                                     "deployments": [{"provider": "openai", "model": "gpt-5.5"}]}
    # Same name here and upstream: the native Responses route must then relay streams byte for byte.
    cfg["models"]["gpt-5.5"] = {**cfg["models"]["gpt-5-5"], "deployments": [{"provider": "openai-responses",
                                                                             "model": "gpt-5.5"}]}
    cfg["providers"].update(extra_providers or {})
    cfg["models"].update(extra_models or {})
    return cfg


# A provider nobody listens on: every call to it is refused.
DEAD_PROVIDER = {"dead": {"type": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "upstream-secret-dead"}}
DEAD_MODEL = {
    "claude-unreachable": {"price": {"input": 1, "output": 5},
                           "deployments": [{"provider": "dead", "model": "claude-unreachable"}]},
    # Same name here and upstream: the native OpenAI route must then relay streams byte for byte.
    "gpt-4o": {"price": {"input": 2.5, "output": 10, "cache_read": 1.25},
               "deployments": [{"provider": "openai", "model": "gpt-4o"}]},
}


class Gateway:
    """A ``bytespike serve`` process on a free port, and ways to set up accounts in its database."""

    def __init__(self, workdir: Path, config: dict, env: dict[str, str] | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "bytespike.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.db_url = config["database_url"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "gateway.log"

    def start(self, *extra: str, migrate: bool = True) -> Gateway:
        if migrate:
            run_async(upgrade(self.db_url))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bytespike", "serve", "--config", str(self.config_path), "--port", str(self.port),
             *extra],
            cwd=self.dir, env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("gateway did not start: " + self.log.read_text()[-3000:])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "bytespike", *args, "--config", str(self.config_path)],
                             capture_output=True, text=True, input=input, env=self.env, cwd=self.dir, timeout=60)
        if check and res.returncode != 0:
            raise AssertionError(f"bytespike {' '.join(args)} failed: {res.stdout}\n{res.stderr}")
        return res

    # ------------------------------------------------------------ direct database set-up

    def account(self, usd: str = "100", group: str = "multi-vendor", limits: list[str] | None = None,
                max_concurrency: int | None = None, org: str | None = None) -> dict[str, Any]:
        """A fresh person with ``usd`` in their wallet and one key; returns email, key, key_id, account_id."""
        email = f"u{secrets.token_hex(6)}@example.com"

        async def go() -> dict[str, Any]:
            db = Database(self.db_url)
            try:
                a = Accounts(db)
                await a.create_user(email, org)
                acct = await a.account(email)
                if money.parse_usd(usd) > 0:
                    await a.post(acct["id"], "topup", money.parse_usd(usd), "test")
                key, digest, prefix = auth.mint()
                from bytespike.billing import limits as lim
                specs = [lim.format_limit_spec(lim.parse_limit_spec(s)) for s in limits or []]
                rec = await a.create_key(acct["id"], digest, prefix, group, user_id=acct["user_id"], limits=specs,
                                         max_concurrency=max_concurrency)
                return {"email": email, "key": key, "key_id": rec.id, "account_id": acct["id"]}
            finally:
                await db.close()

        return run_async(go())

    def query(self, sql: str, *params: Any) -> list[tuple]:
        import sqlite3

        path = self.db_url.split(":///", 1)[1]
        with sqlite3.connect(path) as conn:
            return conn.execute(sql, params).fetchall()

    def wait_settled(self, request_ids: list[str] | None = None, count: int | None = None,
                     account_id: str | None = None, timeout: float = 10) -> None:
        """Usage records are written off the hot path: wait until they are there."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if request_ids is not None:
                marks = ",".join("?" * len(request_ids))
                n = self.query(f"SELECT COUNT(*) FROM usage_records WHERE request_id IN ({marks})", *request_ids)[0][0]
                if n == len(request_ids):
                    return
            elif account_id is not None and count is not None:
                n = self.query("SELECT COUNT(*) FROM usage_records WHERE account_id = ?", account_id)[0][0]
                if n >= count:
                    return
            time.sleep(0.05)
        raise AssertionError("usage records were not written in time")


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeUpstream]:
    f = FakeUpstream().start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _reset_fake(request: pytest.FixtureRequest) -> Iterator[None]:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()
    yield


@pytest.fixture(scope="session")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("gw")
    cfg = test_config(fake.url, d / "bytespike.db", extra_providers=DEAD_PROVIDER, extra_models=DEAD_MODEL)
    cfg["server"] = {"max_body_bytes": 4 * 1024 * 1024}
    gw = Gateway(d, cfg).start()
    yield gw
    gw.stop()


@pytest.fixture()
def acct(gateway: Gateway) -> dict[str, Any]:
    return gateway.account()
