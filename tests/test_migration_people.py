"""Migration 0002_people on a database made by 0001: existing org members get roles, and it goes back down."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from alembic import command

from bytespike.store.db import _alembic_config


def test_upgrading_an_0001_database_gives_each_org_its_first_member_as_owner(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    cfg = _alembic_config(url)
    command.upgrade(cfg, "0001")
    now = time.time()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO accounts VALUES ('org_1', 'org', 'acme', ?)", (now,))
        for i, email in enumerate(("first@acme.test", "second@acme.test")):
            db.execute("INSERT INTO accounts VALUES (?, 'user', ?, ?)", (f"acct_{i}", email, now + i))
            db.execute("INSERT INTO users (id, email, account_id, org_id, password_hash, is_admin, created_at) "
                       "VALUES (?, ?, 'org_1', 'org_1', NULL, 0, ?)", (f"user_{i}", email, now + i))
    command.upgrade(cfg, "0002_people")
    with sqlite3.connect(path) as db:
        roles = db.execute("SELECT user_id, role FROM memberships ORDER BY user_id").fetchall()
        assert roles == [("user_0", "owner"), ("user_1", "member")]
        db.execute("INSERT INTO audit_log (created_at, actor, action, target, details) VALUES (1, 'a', 'b', 'c', '{}')")
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
            try:
                db.execute(statement)
            except sqlite3.IntegrityError as exc:
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{statement} was allowed on the audit log")
    command.downgrade(cfg, "0001")
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "memberships" not in tables and "audit_log" not in tables and "users" in tables
