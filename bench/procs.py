"""The processes a bench run starts: the fake upstream and gateways (uvicorn or granian), and their memory.

Each child gets its own session so stopping it stops everything it forked (uvicorn and granian
workers), and an optional CPU set applied before exec so its threads inherit it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
CATALOGUE = ROOT / "src" / "bytespike" / "defaults.yaml"
BIN = Path(sys.executable).parent


def pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec function that restricts the child to ``cpus`` (None: no restriction)."""
    if not cpus:
        return None
    frozen = frozenset(cpus)
    return lambda: os.sched_setaffinity(0, frozen)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process in its own session, with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], log: Path, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None, cpus: set[int] | None = None, stdout_pipe: bool = False) -> None:
        self.name = name
        self.log = log
        self._logf: IO[bytes] = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE if stdout_pipe else self._logf,
            stderr=self._logf, start_new_session=True, preexec_fn=pinned(cpus),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        if not self._logf.closed:
            self._logf.flush()
        return self.log.read_text(errors="replace")[-n:]

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Workers that outlived their parent are still in its process group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._logf.close()


def start_fake(workdir: Path, cpus: set[int] | None, whole_streams: bool = False) -> tuple[Proc, str]:
    """Start bench/fake_upstream.py on a free port; returns it and its base URL."""
    cmd = [sys.executable, str(BENCH / "fake_upstream.py"), "--port", "0"]
    if whole_streams:
        cmd.append("--whole-streams")
    p = Proc("fake upstream", cmd, workdir / "fake.log", cpus=cpus, stdout_pipe=True)
    assert p.proc.stdout is not None
    line = p.proc.stdout.readline().decode()
    if not line.startswith("READY "):
        p.stop()
        raise RuntimeError(f"fake upstream did not start: {line!r} {p.tail()}")
    return p, f"http://127.0.0.1:{int(line.split()[1])}"


# ---------------------------------------------------------------- gateway set-up


def start_services() -> tuple[Any, Any]:
    """Throwaway PostgreSQL and Redis servers, the same the tests use (Debian's postgresql, redis-server)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.services import Postgres, Redis, postgres_bin

    bindir, redis = postgres_bin(), shutil.which("redis-server")
    if bindir is None or redis is None:
        raise RuntimeError("--shared needs PostgreSQL and Redis: apt-get install postgresql redis-server")
    return Postgres(bindir).start(), Redis(redis).start()


def write_config(workdir: Path, fake_url: str, db_url: str | None = None,
                 redis_url: str | None = None) -> tuple[Path, str]:
    """The built-in catalogue with every provider pointed at the fake upstream; returns (path, database URL).
    Without ``db_url``, a SQLite database in ``workdir``."""
    cfg = yaml.safe_load(CATALOGUE.read_text())
    db_url = db_url or f"sqlite:///{workdir / 'bytespike.db'}"
    cfg["database_url"] = db_url
    cfg["redis_url"] = redis_url
    cfg["admin_token"] = "bench-admin-token-" + os.urandom(8).hex()
    for name, p in cfg["providers"].items():
        p["base_url"] = f"{fake_url}/{name}"
        p["api_key"] = f"upstream-secret-{name}"
    path = workdir / "bytespike.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, db_url


def clone_config(config: Path, name: str) -> Path:
    """A copy of ``config`` on a snapshot of its SQLite database (same accounts and keys), for a
    second gateway: one process owns each SQLite database. PostgreSQL is simply shared."""
    cfg = yaml.safe_load(config.read_text())
    if not str(cfg["database_url"]).startswith("sqlite"):
        return config
    src = cfg["database_url"].split(":///", 1)[1]
    dst = config.parent / f"{name}.db"
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    cfg["database_url"] = f"sqlite:///{dst}"
    path = config.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def create_accounts(db_url: str, usd: str) -> tuple[str, str]:
    """Migrate the database and create two people with a key each: one funded with ``usd``, one with nothing."""
    from bytespike.accounts import keys as auth
    from bytespike.billing import money
    from bytespike.store.accounts import Accounts
    from bytespike.store.db import Database, upgrade

    async def go() -> tuple[str, str]:
        await upgrade(db_url)
        db = Database(db_url)
        try:
            a = Accounts(db)
            keys = []
            for email, amount in (("bench@example.com", usd), ("bench-empty@example.com", "0")):
                await a.create_user(email)
                acct = await a.account(email)
                if money.parse_usd(amount) > 0:
                    await a.post(acct["id"], "topup", money.parse_usd(amount), "bench")
                key, digest, prefix = auth.mint()
                await a.create_key(acct["id"], digest, prefix, "multi-vendor", user_id=acct["user_id"], name="bench")
                keys.append(key)
            return keys[0], keys[1]
        finally:
            await db.close()

    return asyncio.run(go())


def start_gateway(workdir: Path, config: Path, *, server: str, workers: int, cpus: set[int] | None,
                  env: dict[str, str] | None = None, name: str = "gateway") -> tuple[Proc, str]:
    """Start the gateway under ``server`` ("uvicorn": ``bytespike serve``; "granian"); returns it and its URL."""
    port = free_port()
    full_env = {**os.environ, **(env or {})}
    if server == "uvicorn":
        cmd = [sys.executable, "-m", "bytespike", "serve", "--config", str(config), "--port", str(port),
               "--workers", str(workers)]
    elif server == "granian":
        full_env["BYTESPIKE_SERVE"] = orjson.dumps(
            {"config": str(config), "demo": False, "host": "127.0.0.1", "port": port}).decode()
        cmd = [str(BIN / "granian"), "--interface", "asgi", "--factory", "bytespike.http.serving:factory",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--loop", "uvloop",
               "--http", "1", "--no-ws", "--log-level", "warning"]
    else:
        raise ValueError(f"unknown server {server!r}")
    p = Proc(name, cmd, workdir / f"{name.replace(' ', '-')}.log", env=full_env, cwd=workdir, cpus=cpus)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if not p.alive():
            raise RuntimeError(f"{name} exited during start:\n{p.tail()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return p, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    p.stop()
    raise RuntimeError(f"{name} did not answer /healthz within 60 s:\n{p.tail()}")


# ---------------------------------------------------------------- memory and CPU


def children(pid: int) -> list[int]:
    kids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def rss_kib(pid: int) -> int:
    """Resident memory (VmRSS) of ``pid`` and all its descendants, in KiB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
        todo.extend(children(p))
    return total


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its descendants (all threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / tick
        todo.extend(children(p))
    return total
