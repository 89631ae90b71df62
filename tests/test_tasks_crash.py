"""``kill -9`` of a gateway with tasks running and queued: after a restart every task finishes,
none reaches completion upstream twice, none is charged twice, and the ledger is the usage records."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tasks_support import CountingUpstream, books_match, statuses, submit_many, task_gateway

DONE_BEFORE = 20
RUNNING = 10
QUEUED = 200
COST = (100 * 1 + 50 * 5) * 1000  # haiku, nano-USD: 100 input tokens at 1 USD/M, 50 output at 5 USD/M


@pytest.fixture()
def upstream() -> Iterator[CountingUpstream]:
    u = CountingUpstream().start()
    yield u
    u.stop()


def wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, what
        time.sleep(0.05)


def test_kill_9_with_tasks_running_and_queued_then_restart_finishes_each_once_and_charges_each_once(
        upstream: CountingUpstream, tmp_path_factory: pytest.TempPathFactory) -> None:
    # A long lease: after the restart the tasks run again because the only process on the database
    # knows the running ones are orphans, not because their leases lapsed.
    gw = task_gateway(upstream.url, tmp_path_factory.mktemp("taskcrash"),
                      tasks={"max_running": RUNNING, "max_running_per_account": RUNNING, "lease_seconds": 60}).start()
    try:
        acct = gw.account(usd="100")
        upstream.answer_first = DONE_BEFORE
        upstream.hold.set()
        jobs = [f"crash job-{i}" for i in range(DONE_BEFORE + RUNNING + QUEUED)]
        ids = submit_many(gw, acct["key"], jobs)

        def settled() -> int:
            return gw.query("SELECT COUNT(*) FROM usage_records WHERE account_id = ? AND cost > 0",
                            acct["account_id"])[0][0]

        wait(lambda: len(upstream.completed) == DONE_BEFORE and upstream.held() == RUNNING
             and settled() == DONE_BEFORE, 30, "the first tasks did not finish and the next start")
        wait(lambda: statuses(gw, acct["account_id"]) == {"succeeded": DONE_BEFORE, "running": RUNNING,
                                                          "queued": QUEUED}, 10, "statuses before the kill")
        gw.stop(signal.SIGKILL)
        wait(lambda: sum(upstream.abandoned.values()) == RUNNING, 10, "the running requests were not dropped")
        upstream.hold.clear()
        gw.start()

        wait(lambda: statuses(gw, acct["account_id"]).get("succeeded") == len(jobs), 40,
             "not every task finished after the restart")
        wait(lambda: settled() == len(jobs), 10, "not every task was settled")
        assert upstream.completed == {job: 1 for job in jobs}  # none twice upstream to completion
        assert sorted(upstream.abandoned.values()) == [1] * RUNNING
        billed = gw.query("SELECT task_id, COUNT(*), SUM(cost) FROM usage_records WHERE account_id = ? AND cost > 0 "
                          "GROUP BY task_id", acct["account_id"])
        assert sorted(r[0] for r in billed) == sorted(ids)
        assert all(n == 1 and cost == COST for _, n, cost in billed)  # none charged twice
        charges = gw.query("SELECT COUNT(*), COUNT(DISTINCT request_id), -SUM(amount) FROM ledger "
                           "WHERE account_id = ? AND kind = 'charge'", acct["account_id"])[0]
        assert charges == (len(jobs), len(jobs), len(jobs) * COST)
        books_match(gw, acct["account_id"])  # the ledger is the usage records
        rerun = gw.query("SELECT COUNT(*) FROM tasks WHERE account_id = ? AND attempts = 2", acct["account_id"])[0][0]
        assert rerun == RUNNING
        by_task = dict(gw.query("SELECT id, request_id FROM tasks WHERE account_id = ?", acct["account_id"]))
        charged = dict(gw.query("SELECT task_id, request_id FROM usage_records WHERE account_id = ? AND cost > 0",
                                acct["account_id"]))
        assert by_task == charged  # each task names the request that was charged for it
    finally:
        gw.stop()
