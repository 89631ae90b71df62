"""Leasing straight against the store, as several gateway instances would: concurrent claims never
take one task twice and keep the global and per-account caps; an expired lease is taken over and
its old holder can no longer write. SQLite always; PostgreSQL too when BYTESPIKE_TEST_POSTGRES_URL
points at a scratch database (its tasks are deleted first)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from bytespike.accounts import keys as auth
from bytespike.store import tasks as store
from bytespike.store.accounts import Accounts
from bytespike.store.db import Database, upgrade
from conftest import run_async

PG = os.environ.get("BYTESPIKE_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lease.db'}"
    if not PG:
        pytest.skip("BYTESPIKE_TEST_POSTGRES_URL is not set")

    async def empty() -> None:
        from sqlalchemy import delete

        from bytespike.store.schema import task_deliveries, tasks

        await upgrade(PG)
        db = Database(PG)
        try:
            async with db.write() as conn:
                await conn.execute(delete(task_deliveries))
                await conn.execute(delete(tasks))
        finally:
            await db.close()

    run_async(empty())
    return PG


async def _accounts(db: Database, n: int) -> list[tuple[str, str]]:
    a = Accounts(db)
    out = []
    for _ in range(n):
        email = f"lease{os.urandom(5).hex()}@example.com"
        await a.create_user(email)
        acct = await a.account(email)
        _, digest, prefix = auth.mint()
        rec = await a.create_key(acct["id"], digest, prefix, "multi-vendor", user_id=acct["user_id"])
        out.append((acct["id"], rec.id))
    return out


async def _queue(db: Database, owners: list[tuple[str, str]], per: int) -> list[str]:
    now = time.time()
    ids = []
    async with db.write() as conn:
        for i in range(per):
            for account_id, key_id in owners:
                tid = store.new_task_id()
                ids.append(tid)
                await store.insert_task(conn, {
                    "id": tid, "account_id": account_id, "key_id": key_id, "endpoint": "/v1/messages", "model": "m",
                    "request": "{}", "request_hash": "h", "status": "queued", "attempts": 0, "created_at": now + i,
                    "not_before": now, "deadline_at": now + 3600, "webhook_attempts": 0})
    return ids


def test_concurrent_claims_take_each_task_once_within_the_caps(url: str) -> None:
    async def go() -> None:
        await upgrade(url)
        instances = [Database(url) for _ in range(3)]  # three gateways, three connection pools
        try:
            owners = await _accounts(instances[0], 4)
            ids = await _queue(instances[0], owners, 10)
            taken: list[Any] = []

            async def claim(db: Database) -> None:
                async with db.write() as conn:
                    taken.extend(await store.claim(conn, time.time(), limit=8, lease_seconds=30, total_cap=10,
                                                   per_account=3))

            await asyncio.gather(*(claim(db) for db in instances for _ in range(3)))
            assert len({t.id for t in taken}) == len(taken) == 10  # the global cap, nothing twice
            per = {a: sum(t.account_id == a for t in taken) for a, _ in owners}
            assert max(per.values()) <= 3 and sum(per.values()) == 10
            assert {t.id for t in taken} <= set(ids)
        finally:
            for db in instances:
                await db.close()

    run_async(go())


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_finish(url: str) -> None:
    async def go() -> None:
        await upgrade(url)
        db = Database(url)
        try:
            owners = await _accounts(db, 1)
            [tid] = await _queue(db, owners, 1)
            async with db.write() as conn:
                [first] = await store.claim(conn, time.time(), limit=1, lease_seconds=0.2, total_cap=5, per_account=5)
            async with db.write() as conn:
                assert await store.claim(conn, time.time(), limit=1, lease_seconds=30, total_cap=5, per_account=5) == []
            await asyncio.sleep(0.3)
            async with db.write() as conn:
                [second] = await store.claim(conn, time.time(), limit=1, lease_seconds=30, total_cap=5, per_account=5)
                assert second.id == tid and second.attempts == 2 and second.lease_token != first.lease_token
                assert first.lease_token is not None and second.lease_token is not None
                assert not await store.store_answer(conn, tid, first.lease_token, request_id="r1", http_status=200,
                                                    result="{}")
                assert await store.renew(conn, [(tid, first.lease_token)], time.time() + 30) == {tid}
                assert await store.finish(conn, tid, second.lease_token, "succeeded", time.time(), cost=1)
                row = await store.get(conn, tid)
                assert row is not None and row.status == "succeeded" and row.lease_token is None
        finally:
            await db.close()

    run_async(go())
