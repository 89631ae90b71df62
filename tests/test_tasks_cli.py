"""``bytespike tasks list|show|cancel|purge`` against a running gateway's database, a task stopped
from the CLI, a SIGTERM with a task running, and the migration on an existing database."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Gateway, run_async
from fakeupstream import FakeUpstream, json_answer
from tasks_support import get, haiku, statuses, submit, task_gateway, wait_for


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = task_gateway(fake.url, tmp_path_factory.mktemp("taskcli")).start()
    yield g
    g.stop()


def test_tasks_list_and_show_print_the_accounts_tasks_as_json(gw: Gateway) -> None:
    acct = gw.account(usd="10")
    t = wait_for(gw, acct["key"], submit(gw, acct["key"], haiku(), metadata={"n": 1})["id"])
    listed = json.loads(gw.cli("tasks", "list", acct["email"], "--json").stdout)
    assert [x["id"] for x in listed["data"]] == [t["id"]]
    assert json.loads(gw.cli("tasks", "list", acct["email"], "--status", "queued", "--json").stdout)["data"] == []
    shown = json.loads(gw.cli("tasks", "show", t["id"], "--json").stdout)
    assert shown["status"] == "succeeded" and shown["metadata"] == {"n": 1} and shown["cost_usd"] == t["cost_usd"]
    table = gw.cli("tasks", "list", acct["email"]).stdout
    assert t["id"] in table and "succeeded" in table
    missing = gw.cli("tasks", "show", "task_nope", check=False)
    assert missing.returncode == 1 and "task_nope" in missing.stderr


def test_a_running_task_canceled_from_the_cli_is_stopped_by_its_gateway_unbilled(
        gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    fake.queue(json_answer({"never": "read"}, delay_before=30))
    t = submit(gw, acct["key"], haiku())
    wait_for(gw, acct["key"], t["id"], ("running",))
    out = json.loads(gw.cli("tasks", "cancel", t["id"], "--json").stdout)
    assert out["status"] == "canceled"
    deadline = time.time() + 10  # the gateway notices when it next renews the lease
    while not gw.query("SELECT status, cost FROM usage_records WHERE task_id = ?", t["id"]):
        assert time.time() < deadline, "the gateway did not stop the canceled task's request"
        time.sleep(0.05)
    assert gw.query("SELECT status, cost FROM usage_records WHERE task_id = ?", t["id"]) == [("failed", 0)]
    assert get(gw, acct["key"], t["id"])["status"] == "canceled"


def test_purge_deletes_finished_tasks_past_retention_and_keeps_the_rest(gw: Gateway) -> None:
    acct, dry = gw.account(usd="10"), gw.account(usd="0")
    done = wait_for(gw, acct["key"], submit(gw, acct["key"], haiku())["id"])
    waiting = submit(gw, dry["key"], haiku())
    kept = json.loads(gw.cli("tasks", "purge", "--json").stdout)  # default retention: 30 days
    assert kept["older_than_days"] == 30
    assert get(gw, acct["key"], done["id"])["status"] == "succeeded"
    purged = json.loads(gw.cli("tasks", "purge", "--older-than-days", "0", "--json").stdout)
    assert purged["purged"] >= 1
    assert gw.query("SELECT COUNT(*) FROM tasks WHERE id = ?", done["id"]) == [(0,)]
    assert statuses(gw, dry["account_id"]) == {"queued": 1}
    assert gw.query("SELECT id FROM tasks WHERE id = ?", waiting["id"]) == [(waiting["id"],)]
    # The usage record and the charge stay: only the task's stored result goes.
    assert gw.query("SELECT COUNT(*) FROM usage_records WHERE task_id = ?", done["id"]) == [(1,)]


def test_sigterm_puts_a_running_task_back_in_the_queue_and_it_runs_once_after_restart(
        fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> None:
    g = task_gateway(fake.url, tmp_path_factory.mktemp("taskterm")).start()
    try:
        acct = g.account(usd="10")
        fake.queue(json_answer({"never": "read"}, delay_before=30))
        t = submit(g, acct["key"], haiku())
        wait_for(g, acct["key"], t["id"], ("running",))
        g.stop()
        assert g.query("SELECT status, attempts FROM tasks WHERE id = ?", t["id"]) == [("queued", 0)]
        assert g.query("SELECT status, cost FROM usage_records WHERE task_id = ?", t["id"]) == [("failed", 0)]
        g.start()
        done = wait_for(g, acct["key"], t["id"])
        assert done["status"] == "succeeded" and done["attempts"] == 1
        g.wait_settled([done["request_id"]])
        assert g.query("SELECT COUNT(*) FROM ledger WHERE kind = 'charge'") == [(1,)]
    finally:
        g.stop()


def test_the_migration_adds_tasks_to_an_existing_database_and_can_be_undone(tmp_path: Path) -> None:
    from alembic import command

    from bytespike.store.db import _alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = _alembic_config(url)
    run_async(_to(cfg, "0001"))
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("INSERT INTO usage_records (request_id, created_at, protocol, model_asked, stream, input_tokens, "
                     "output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cost, status, "
                     "http_status) VALUES ('req_old', 1, 'anthropic', 'm', 0, 1, 1, 0, 0, 0, 5, 'succeeded', 200)")
    command.upgrade(cfg, "head")
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert conn.execute("SELECT request_id, cost, task_id FROM usage_records").fetchall() == [("req_old", 5, None)]
        assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone() == (0,)
    command.downgrade(cfg, "0001")
    with sqlite3.connect(tmp_path / "old.db") as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(usage_records)")]
        assert "task_id" not in cols
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'tasks'").fetchall() == []
        assert conn.execute("SELECT request_id FROM usage_records").fetchall() == [("req_old",)]


async def _to(cfg, revision: str) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from alembic import command

    await asyncio.to_thread(command.upgrade, cfg, revision)
