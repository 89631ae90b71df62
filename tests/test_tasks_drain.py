"""A thousand queued tasks from several accounts drain with the global and per-account caps held."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from conftest import Gateway
from tasks_support import CountingUpstream, books_match, statuses, submit_many, task_gateway

ACCOUNTS = 4
PER_ACCOUNT_TASKS = 250
PER_ACCOUNT_CAP = 3
GLOBAL_CAP = 10


@pytest.fixture()
def upstream() -> Iterator[CountingUpstream]:
    u = CountingUpstream().start()
    u.delay = 0.02  # long enough for running tasks to overlap
    yield u
    u.stop()


def test_a_thousand_queued_tasks_drain_with_the_per_account_and_global_caps_respected(
        upstream: CountingUpstream, tmp_path_factory: pytest.TempPathFactory) -> None:
    gw: Gateway = task_gateway(upstream.url, tmp_path_factory.mktemp("drain"),
                               tasks={"max_running": GLOBAL_CAP, "max_running_per_account": PER_ACCOUNT_CAP}).start()
    try:
        upstream.hold.set()  # queue everything first, then let it run
        accts = [gw.account(usd="100") for _ in range(ACCOUNTS)]
        jobs = {a["account_id"]: [f"a{n} job-{i}" for i in range(PER_ACCOUNT_TASKS)] for n, a in enumerate(accts)}
        for a in accts:
            submit_many(gw, a["key"], jobs[a["account_id"]])
        upstream.hold.clear()
        started = time.time()
        deadline = started + 120
        while sum(statuses(gw, a["account_id"]).get("succeeded", 0) for a in accts) < ACCOUNTS * PER_ACCOUNT_TASKS:
            assert time.time() < deadline, "the queue did not drain"
            time.sleep(0.1)
        elapsed = time.time() - started
        assert all(statuses(gw, a["account_id"]) == {"succeeded": PER_ACCOUNT_TASKS} for a in accts)
        assert upstream.completed == {j: 1 for js in jobs.values() for j in js}
        assert max(upstream.peak.values()) == PER_ACCOUNT_CAP  # reached, never passed
        assert upstream.peak_total <= GLOBAL_CAP
        for a in accts:
            gw.wait_settled(account_id=a["account_id"], count=PER_ACCOUNT_TASKS)
            books_match(gw, a["account_id"])
        print(f"1000 tasks drained in {elapsed:.1f} s ({1000 / elapsed:.0f} tasks/s)")
    finally:
        gw.stop()
