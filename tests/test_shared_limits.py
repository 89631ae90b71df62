"""The Redis side of shared limits, against a real redis-server and a real database, on a clock the
test sets: exact rolling entries, retry-after to the second, caps counting what is in flight, a
crashed instance's slots ageing out, and a rebuild from the database after Redis lost everything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bytespike.billing import limits as lim
from bytespike.billing.shared import SharedLimits, SharedView
from bytespike.store.db import Database, upgrade
from bytespike.store.redis import RedisLink
from bytespike.store.schema import accounts, holds, usage_records
from conftest import run_async
from support.services import Redis

T0 = 2_000_000_000.0
HOLD = 30.0


def _record(rid: str, at: float, cost: int, tokens: int) -> dict[str, Any]:
    return {"request_id": rid, "created_at": at, "account_id": "acct_1", "key_id": "key_1", "protocol": "anthropic",
            "model_asked": "m", "stream": False, "input_tokens": tokens, "output_tokens": 0, "cache_read_tokens": 0,
            "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0, "cost": cost, "status": "succeeded",
            "http_status": 200}


def scenario(redis_server: Redis, tmp_path: Path, body: Any) -> Any:
    async def go() -> Any:
        url = f"sqlite:///{tmp_path / 's.db'}"
        await upgrade(url)
        db = Database(url)
        async with db.write() as conn:
            await conn.execute(insert(accounts).values(id="acct_1", kind="user", name="a@b.c", created_at=T0))
        link = RedisLink(redis_server.url)
        await link.start()
        await link.redis.flushall()
        try:
            return await body(SharedLimits(link, db, HOLD), db, link)
        finally:
            await link.close()
            await db.close()

    return run_async(go())


def test_a_request_window_refuses_the_next_and_says_the_second_the_oldest_ages_out(
        redis_server: Redis, tmp_path: Path) -> None:
    specs = (lim.parse_limit_spec("1m:requests=3"),)

    async def body(shared: SharedLimits, db: Database, link: RedisLink) -> None:
        for i, t in enumerate((T0, T0 + 10.5, T0 + 20)):
            got = await shared.admit("key_1", specs, None, f"r{i}", 5, t, t + HOLD)
            assert isinstance(got, SharedView)
            await shared.settle("key_1", f"r{i}", t, True, 5, 7, specs)
        refused = await shared.admit("key_1", specs, None, "r3", 5, T0 + 30, T0 + 30 + HOLD)
        assert refused == lim.Refused("1m", "requests", 30)  # the entry at T0 leaves the window at T0 + 60
        assert isinstance(await shared.admit("key_1", specs, None, "r4", 5, T0 + 59.9, T0 + 90), lim.Refused)
        ok = await shared.admit("key_1", specs, None, "r5", 5, T0 + 60, T0 + 90)
        assert isinstance(ok, SharedView)
        [w] = ok.snapshot(T0 + 60)
        assert (w.requests_used, w.requests_in_flight, w.tokens_used, w.resets_at) == (2, 1, 14, T0 + 10.5 + 60)

    scenario(redis_server, tmp_path, body)


def test_usd_and_request_caps_count_requests_in_flight_and_failures_count_nothing(
        redis_server: Redis, tmp_path: Path) -> None:
    specs = (lim.WindowSpec("1h", 3600, usd=100, requests=3),)

    async def body(shared: SharedLimits, db: Database, link: RedisLink) -> None:
        assert isinstance(await shared.admit("key_1", specs, None, "a", 60, T0, T0 + HOLD), SharedView)
        refused = await shared.admit("key_1", specs, None, "b", 41, T0, T0 + HOLD)
        assert isinstance(refused, lim.Refused) and refused.reason == "usd"
        assert isinstance(await shared.admit("key_1", specs, None, "c", 40, T0, T0 + HOLD), SharedView)
        await shared.settle("key_1", "a", T0 + 1, False, 0, 0, specs)  # failed: frees its hold, counts nothing
        view = await shared.view("key_1", specs, None, T0 + 1)
        [w] = view.snapshot(T0 + 1)
        assert (w.usd_used, w.usd_held, w.requests_used, w.requests_in_flight) == (0, 40, 0, 1)

    scenario(redis_server, tmp_path, body)


def test_a_crashed_instances_slot_frees_itself_when_its_hold_expires(redis_server: Redis, tmp_path: Path) -> None:
    specs = lim.DEFAULT_WINDOWS

    async def body(shared: SharedLimits, db: Database, link: RedisLink) -> None:
        assert isinstance(await shared.admit("key_1", specs, 1, "lost", 5, T0, T0 + HOLD), SharedView)
        refused = await shared.admit("key_1", specs, 1, "next", 5, T0 + HOLD - 1, T0 + 2 * HOLD)
        assert refused == lim.Refused("concurrency", "concurrency", 1)
        assert isinstance(await shared.admit("key_1", specs, 1, "next", 5, T0 + HOLD, T0 + 2 * HOLD), SharedView)

    scenario(redis_server, tmp_path, body)


def test_after_redis_loses_everything_a_key_is_rebuilt_from_the_database(redis_server: Redis, tmp_path: Path) -> None:
    specs = (lim.parse_limit_spec("1h:requests=4"),)

    async def body(shared: SharedLimits, db: Database, link: RedisLink) -> None:
        async with db.write() as conn:
            await conn.execute(insert(usage_records), [_record("old", T0 - 4000, 9, 9), _record("u1", T0 - 100, 9, 9)])
            await conn.execute(insert(holds), [
                {"id": "open", "account_id": "acct_1", "key_id": "key_1", "amount": 3, "created_at": T0,
                 "expires_at": T0 + HOLD},
                {"id": "settled", "account_id": "acct_1", "key_id": "key_1", "amount": 3, "created_at": T0,
                 "expires_at": T0 + HOLD}])
        # "settled" finished on some instance after Redis came back; its usage record is not written yet.
        await shared.settle("key_1", "settled", T0 + 1, True, 9, 9, specs)
        view = await shared.view("key_1", specs, None, T0 + 2)  # not loaded yet: rebuilt here
        [w] = view.snapshot(T0 + 2)
        assert (w.requests_used, w.requests_in_flight) == (2, 1)  # u1 and "settled"; "open" in flight
        assert isinstance(await shared.admit("key_1", specs, None, "n", 1, T0 + 3, T0 + HOLD), SharedView)
        assert isinstance(await shared.admit("key_1", specs, None, "m", 1, T0 + 3, T0 + HOLD), lim.Refused)

    scenario(redis_server, tmp_path, body)
