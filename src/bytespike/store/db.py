"""Engine creation and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bytespike.store.changes import ChangeCounter


def async_url(url: str) -> str:
    """Map the configuration's plain URLs to the async drivers we use."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    if url.startswith("sqlite+aiosqlite://"):
        return url
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    if url.startswith("postgresql+asyncpg://"):
        return url
    raise ValueError(f"unsupported database_url {url!r}: use sqlite:///PATH or postgresql://...")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> str | None:
    """The file behind a sqlite URL, or None for an in-memory database."""
    if not is_sqlite(url):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return None if path in ("", ":memory:") else path


def private_sqlite_file(path: str) -> None:
    """Create the database file readable by its owner only (it holds emails, the ledger and key
    hashes), and tighten one made before; SQLite gives its -wal and -shm files the same mode."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Never open and close a database file that exists: closing any descriptor of it drops the
    # POSIX locks SQLite holds on it in this process.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    for p in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if os.stat(p).st_mode & 0o077:
                os.chmod(p, 0o600)


def create_engine(url: str) -> AsyncEngine:
    aurl = async_url(url)
    if is_sqlite(aurl):
        path = sqlite_path(url)
        if path:
            private_sqlite_file(path)
        engine = create_async_engine(aurl, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy's "begin" below decide how each transaction starts.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            # Writers take the lock up front so read-then-write transactions never fail late.
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_async_engine(aurl, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "bytespike.store:migrations")
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


MIGRATION_LOCK = 0x6279_7465_7370_6B65
"""The PostgreSQL advisory lock held while migrating ("bytespke" in hex)."""


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (safe to run at every start, from any number of processes
    at once: they take turns, on SQLite through a file lock beside the database and on PostgreSQL
    through an advisory lock taken in the migration environment, and the later ones find nothing
    left to do)."""
    from alembic import command

    path = sqlite_path(url) if is_sqlite(url) else None
    if not path:
        command.upgrade(_alembic_config(url), revision)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    private_sqlite_file(path)
    with open(f"{path}.migrate-lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            command.upgrade(_alembic_config(url), revision)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


async def upgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade_sync, url, revision)


class Database:
    """The engine plus the two ways we use it: plain reads and serialised write transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.sqlite = is_sqlite(url)
        path = sqlite_path(url)
        self._key_changes_path = f"{path}.keys" if path else None
        self._key_changes: ChangeCounter | None = None

    @property
    def key_changes(self) -> ChangeCounter | None:
        """The counter every key change bumps (SQLite files only; None elsewhere)."""
        if self._key_changes is None and self._key_changes_path:
            self._key_changes = ChangeCounter(self._key_changes_path)
        return self._key_changes

    def write(self):  # type: ignore[no-untyped-def]
        """A transaction that holds the write lock from its first statement (SQLite: BEGIN IMMEDIATE)."""
        return _WriteTx(self.engine)

    def read(self):  # type: ignore[no-untyped-def]
        return self.engine.connect()

    async def ping(self) -> bool:
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def close(self) -> None:
        await self.engine.dispose()
        if self._key_changes is not None:
            self._key_changes.close()
            self._key_changes = None


class _WriteTx:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._cm = None

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        conn = await self._engine.connect()
        conn = await conn.execution_options(sqlite_immediate=True)
        self._conn = conn
        self._tx = await conn.begin()
        return conn

    async def __aexit__(self, exc_type, exc, tb):  # type: ignore[no-untyped-def]
        try:
            if exc_type is None:
                await self._tx.commit()
            else:
                await self._tx.rollback()
        finally:
            await self._conn.close()
        return False
