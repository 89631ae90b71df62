"""Throwaway PostgreSQL and Redis servers for tests: real processes on free loopback ports.

Both come from Debian's packages (``scripts/test.sh`` installs them). PostgreSQL refuses to run
as root, so when the tests run as root its data directory belongs to the ``postgres`` user and
its programs run through ``runuser``. A test that needs a server and finds no binaries is skipped
with the reason; nothing here talks to a server the machine already runs.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:] if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}: {log.read_text()[-2000:] if log.exists() else ''}")


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("postgres")
    return Path(which).parent if which else None


class Postgres:
    """One PostgreSQL cluster in a temporary directory; :meth:`database` makes a fresh database."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="bytespike-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.user = "postgres" if self._as else pwd.getpwuid(os.geteuid()).pw_name

    def start(self) -> Postgres:
        subprocess.run([*self._as, str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
                        "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [*self._as, str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115 - the server's log
        _wait_port(self.port, self.proc, "postgres", self.log)
        return self

    def psql(self, sql: str, db: str = "postgres") -> str:
        res = subprocess.run([*self._as, str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", self.user, "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            # Right after start the server can still refuse connections for a moment.
            raise RuntimeError(f"psql failed: {res.stderr}")
        return res.stdout

    def database(self) -> str:
        """A new empty database; returns its ``postgresql://`` URL."""
        name = "t_" + secrets.token_hex(6)
        for attempt in range(50):
            try:
                self.psql(f"CREATE DATABASE {name}")
                break
            except RuntimeError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    close = stop


class Redis:
    """One redis-server without persistence; :meth:`stop` and :meth:`start` again on the same port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="bytespike-redis-"))
        self.log = self.dir / "redis.log"
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Redis:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--protected-mode", "no"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115 - the server's log
        _wait_port(self.port, self.proc, "redis-server", self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cli(self, *args: str) -> str:
        res = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=30)
        return res.stdout.strip()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; scripts/test.sh does it)")
    pg = Postgres(bindir).start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; scripts/test.sh does it)")
    r = Redis(binary).start()
    yield r
    r.close()
