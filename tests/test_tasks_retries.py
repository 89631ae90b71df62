"""How a task meets failure: upstream errors retried with backoff (honouring ``retry-after``) and
then ``failed`` unbilled, an empty wallet waited out, a deadline that passes ends it ``expired``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import Gateway
from fakeupstream import Answer, FakeUpstream, Received, json_answer
from tasks_support import books_match, get, haiku, statuses, submit, task_gateway, wait_for


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = task_gateway(fake.url, tmp_path_factory.mktemp("retries"), tasks={"max_attempts": 3}).start()
    yield g
    g.stop()


def overloaded() -> Answer:
    return json_answer({"type": "error", "error": {"type": "api_error", "message": "upstream broke"}}, status=500)


def test_a_task_whose_upstream_keeps_failing_is_retried_then_ends_failed_and_unbilled(
        gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    fake.handler = lambda r: overloaded() if "/anthropic/" in r.path else None
    req = {**haiku(), "model": "claude-opus-4-8"}  # its own deployment: the others' breakers stay closed
    t = submit(gw, acct["key"], req)
    done = wait_for(gw, acct["key"], t["id"])
    assert done["status"] == "failed" and done["attempts"] == 3
    assert done["error"]["type"] == "error" and done["error"]["error"]["type"] == "api_error"
    assert done["cost_usd"] == "0" and done["result"] is None
    assert len(fake.requests_to("/anthropic/v1/messages")) == 3
    deadline = time.time() + 5
    while len(gw.query("SELECT 1 FROM usage_records WHERE task_id = ?", t["id"])) < 3:
        assert time.time() < deadline
        time.sleep(0.05)
    records = gw.query("SELECT status, cost FROM usage_records WHERE task_id = ?", t["id"])
    assert records == [("failed", 0)] * 3
    assert gw.query("SELECT COUNT(*) FROM ledger WHERE account_id = ? AND kind = 'charge'", acct["account_id"]) == [(0,)]
    books_match(gw, acct["account_id"])


def test_an_upstream_error_that_retrying_cannot_fix_fails_the_task_at_once(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    fake.queue(json_answer({"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "prompt is too long"}}, status=400))
    done = wait_for(gw, acct["key"], submit(gw, acct["key"], haiku())["id"])
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["error"]["message"] == "prompt is too long"


def test_a_429_with_retry_after_is_waited_out_then_the_task_succeeds(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    times: list[float] = []
    lock = threading.Lock()

    def upstream(r: Received) -> Answer | None:
        with lock:
            times.append(time.monotonic())
            if len(times) == 1:
                return json_answer({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
                                   status=429, headers={"retry-after": "2"})
        return None

    fake.handler = upstream
    t = submit(gw, acct["key"], {**haiku(), "model": "claude-sonnet-4-6"})
    time.sleep(0.5)
    waiting = get(gw, acct["key"], t["id"])
    assert waiting["status"] == "queued" and waiting["attempts"] == 1
    assert waiting["error"]["error"]["type"] == "rate_limit_error"  # the last error, while it waits
    done = wait_for(gw, acct["key"], t["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert done["result"]["type"] == "message" and done["error"] is None
    assert len(times) == 2 and times[1] - times[0] >= 2.0
    gw.wait_settled([done["request_id"]])
    books_match(gw, acct["account_id"])


def test_a_dry_wallet_leaves_tasks_queued_not_failed_until_a_top_up(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="0")
    ids = [submit(gw, acct["key"], haiku(f"t{i}"))["id"] for i in range(6)]
    time.sleep(2)
    assert statuses(gw, acct["account_id"]) == {"queued": 6}
    assert fake.requests_to("/anthropic/v1/messages") == []
    # Waiting costs one refused request per wait for the whole account, not one per task.
    refused = gw.query("SELECT COUNT(*) FROM usage_records WHERE account_id = ? AND status = 'refused'",
                       acct["account_id"])[0][0]
    assert 1 <= refused <= 10
    # ... and the waits are not attempts (a probe counts only while it is running).
    assert all(get(gw, acct["key"], i)["attempts"] <= 1 for i in ids)
    gw.cli("wallet", "topup", acct["email"], "5")
    done = [wait_for(gw, acct["key"], i) for i in ids]
    assert [(d["status"], d["attempts"]) for d in done] == [("succeeded", 1)] * 6
    assert len(fake.requests_to("/anthropic/v1/messages")) == 6
    gw.wait_settled([d["request_id"] for d in done])
    books_match(gw, acct["account_id"])


def test_a_task_that_cannot_start_before_its_deadline_ends_expired_unbilled(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="0")
    t = submit(gw, acct["key"], haiku(), deadline_seconds=1)
    done = wait_for(gw, acct["key"], t["id"], timeout=10)
    assert done["status"] == "expired" and done["cost_usd"] == "0"
    assert done["error"]["error"]["type"] in ("timeout_error", "billing_error")
    assert fake.requests_to("/anthropic/v1/messages") == []


def test_a_task_whose_answer_does_not_arrive_before_its_deadline_ends_expired_unbilled(
        gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    fake.queue(json_answer({"never": "read"}, delay_before=20))
    t = submit(gw, acct["key"], haiku(), deadline_seconds=2)
    done = wait_for(gw, acct["key"], t["id"], timeout=10)
    assert done["status"] == "expired" and done["error"]["error"]["type"] == "timeout_error"
    deadline = time.time() + 5
    while not gw.query("SELECT status, cost FROM usage_records WHERE task_id = ?", t["id"]):
        assert time.time() < deadline
        time.sleep(0.05)
    assert gw.query("SELECT status, cost FROM usage_records WHERE task_id = ?", t["id"]) == [("failed", 0)]
    assert gw.query("SELECT COUNT(*) FROM holds WHERE account_id = ?", acct["account_id"]) == [(0,)]


def test_an_unknown_query_status_or_task_id_is_a_clear_error(gw: Gateway) -> None:
    acct = gw.account(usd="1")
    r = httpx.get(gw.url + "/v1/tasks/task_nope", headers={"x-api-key": acct["key"]})
    assert r.status_code == 404 and "task_nope" in r.json()["error"]["message"]
    r = httpx.get(gw.url + "/v1/tasks", headers={"x-api-key": acct["key"]}, params={"limit": "1000"})
    assert r.status_code == 400 and "limit" in r.json()["error"]["message"]
