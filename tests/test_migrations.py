"""Migrations on SQLite and PostgreSQL: from empty, from the previous release with data in it, and
from many processes starting at once on an empty database (they take turns; one migrates)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from bytespike.store.db import upgrade_sync
from bytespike.store.schema import metadata
from support.services import Postgres


def _revisions() -> tuple[str, str]:
    """(head, the revision before it): the previous release's schema is one migration behind."""
    from alembic.script import ScriptDirectory

    from bytespike.store.db import _alembic_config

    script = ScriptDirectory.from_config(_alembic_config("sqlite:///unused.db"))
    head = script.get_revision(script.get_current_head())
    assert head is not None and isinstance(head.down_revision, str)
    return head.revision, head.down_revision


HEAD, PREVIOUS_RELEASE = _revisions()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.database()


def _inspect(url: str, fn: Any) -> Any:
    """Run ``fn(connection)`` on a plain synchronous connection (asyncpg underneath for PostgreSQL)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from bytespike.store.db import async_url
    from conftest import run_async

    async def go() -> Any:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.connect() as conn:
                result = await conn.run_sync(fn)
                await conn.commit()
                return result
        finally:
            await engine.dispose()

    return run_async(go())


def _differences(conn: Any) -> list[Any]:
    diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    return [d for d in diffs if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]


def _version(conn: Any) -> list[str]:
    return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_migrating_an_empty_database_gives_exactly_the_schema_the_code_uses(empty_db: str) -> None:
    upgrade_sync(empty_db)
    assert _inspect(empty_db, _version) == [HEAD]
    assert _inspect(empty_db, _differences) == []


def test_a_database_of_the_previous_release_keeps_its_data_through_the_upgrade(empty_db: str) -> None:
    upgrade_sync(empty_db, PREVIOUS_RELEASE)

    def fill(conn: Any) -> None:
        conn.execute(text("INSERT INTO accounts (id, kind, name, created_at) VALUES ('acct_1', 'user', 'a@b.c', 1)"))
        conn.execute(text("INSERT INTO ledger (account_id, kind, amount, balance_after, note, created_at) "
                          "VALUES ('acct_1', 'topup', 5000000000, 5000000000, 'old', 1)"))
        conn.execute(text("INSERT INTO holds (id, account_id, key_id, amount, created_at, expires_at) "
                          "VALUES ('req_1', 'acct_1', 'key_1', 7, 1, 9999999999)"))

    _inspect(empty_db, fill)
    upgrade_sync(empty_db)

    def read(conn: Any) -> Any:
        return (_version(conn), [tuple(r) for r in conn.execute(text("SELECT amount, balance_after FROM ledger"))],
                [tuple(r) for r in conn.execute(text("SELECT id, key_id, amount FROM holds"))])

    assert _inspect(empty_db, read) == ([HEAD], [(5000000000, 5000000000)], [("req_1", "key_1", 7)])
    assert _inspect(empty_db, _differences) == []


def test_processes_starting_together_on_an_empty_database_migrate_it_once(empty_db: str) -> None:
    code = "import sys; from bytespike.store.db import upgrade_sync; upgrade_sync(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, empty_db], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert _inspect(empty_db, _version) == [HEAD]
    assert _inspect(empty_db, _differences) == []
