"""``/v1/tasks`` against a real gateway: submit, poll, results, lists, cancel, validation, isolation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from conftest import Gateway
from fakeupstream import FakeUpstream, json_answer
from tasks_support import V, books_match, get, haiku, statuses, submit, task_gateway, wait_for

NANO = 10**9


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = task_gateway(fake.url, tmp_path_factory.mktemp("tasks")).start()
    yield g
    g.stop()


def test_a_messages_task_is_stored_queued_then_its_result_is_the_messages_response_billed_once(
        gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    t = submit(gw, acct["key"], haiku("what is a task?"), metadata={"batch": "b1", "row": 7})
    assert t["id"].startswith("task_") and t["status"] == "queued" and t["object"] == "task"
    assert t["created_at"].endswith("Z") and t["result"] is None and t["cost_usd"] is None
    done = wait_for(gw, acct["key"], t["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["type"] == "message" and done["result"]["role"] == "assistant"
    assert done["result"]["content"][0]["type"] == "text"
    assert done["metadata"] == {"batch": "b1", "row": 7}
    assert done["attempts"] == 1 and done["started_at"] and done["finished_at"]
    assert done["usage"]["output_tokens"] == done["result"]["usage"]["output_tokens"]
    # The usage record names the task, and the task's cost is that record's, charged once.
    gw.wait_settled([done["request_id"]])
    rows = gw.query("SELECT task_id, cost, status FROM usage_records WHERE request_id = ?", done["request_id"])
    assert rows == [(t["id"], rows[0][1], "succeeded")] and rows[0][1] > 0
    assert Decimal(done["cost_usd"]) * NANO == rows[0][1]
    charges = gw.query("SELECT amount FROM ledger WHERE request_id = ?", done["request_id"])
    assert charges == [(-rows[0][1],)]
    sent = fake.requests_to("/anthropic/v1/messages")
    assert len(sent) == 1 and sent[0].json()["messages"][0]["content"] == "what is a task?"
    books_match(gw, acct["account_id"])


def test_a_chat_completions_task_answers_with_the_chat_completion_object(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    t = submit(gw, acct["key"], {"model": "gpt-5-5", "messages": [{"role": "user", "content": "hello"}]},
               endpoint="/v1/chat/completions")
    assert t["endpoint"] == "/v1/chat/completions" and t["model"] == "gpt-5-5"
    done = wait_for(gw, acct["key"], t["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["object"] == "chat.completion"
    assert done["result"]["choices"][0]["message"]["role"] == "assistant"
    assert Decimal(done["cost_usd"]) > 0
    assert len([r for r in fake.received if r.path.startswith("/openai")]) == 1  # one upstream call


def test_anthropic_version_and_beta_given_at_submission_reach_the_upstream(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    t = submit(gw, acct["key"], haiku(), headers={**V, "anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert wait_for(gw, acct["key"], t["id"])["status"] == "succeeded"
    sent = fake.requests_to("/anthropic/v1/messages")[-1]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


@pytest.mark.parametrize(("submission", "param"), [
    ({"request": {"model": "no-such-model", "max_tokens": 10, "messages": []}}, "request.model"),
    ({"request": {"model": "gpt-5-5", "max_tokens": 10, "messages": []}}, "request.model"),  # outside the group
    ({"request": {"model": "claude-haiku-4-5", "messages": []}}, "request.max_tokens"),
    ({"request": {**haiku(), "stream": True}}, "request.stream"),
    ({"request": "not an object"}, "request"),
    ({"request": haiku(), "endpoint": "/v1/complete"}, "endpoint"),
    ({"request": haiku(), "priority": 1}, "priority"),
    ({"request": haiku(), "metadata": ["x"]}, "metadata"),
    ({"request": haiku(), "deadline_seconds": 0}, "deadline_seconds"),
    ({"request": haiku(), "webhook_url": "ftp://example.com/hook"}, "webhook_url"),
])
def test_a_task_that_would_fail_is_refused_at_submission_with_a_400_naming_the_field(
        gw: Gateway, submission: dict, param: str) -> None:
    acct = gw.account(usd="10", group="claude-default")
    r = httpx.post(gw.url + "/v1/tasks", headers={"x-api-key": acct["key"]}, json=submission)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"].startswith(param.split(".")[0]), err
    assert param in err["message"]
    assert statuses(gw, acct["account_id"]) == {}


def test_a_submission_without_a_valid_key_is_401_and_stores_nothing(gw: Gateway) -> None:
    before = gw.query("SELECT COUNT(*) FROM tasks")[0][0]
    r = httpx.post(gw.url + "/v1/tasks", headers={"x-api-key": "sk-byts-nope"}, json={"request": haiku()})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert gw.query("SELECT COUNT(*) FROM tasks")[0][0] == before


def test_an_idempotency_key_makes_a_retried_submission_return_the_same_task(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    h = {"x-api-key": acct["key"], "idempotency-key": "order-42"}
    first = httpx.post(gw.url + "/v1/tasks", headers=h, json={"request": haiku("once")})
    again = httpx.post(gw.url + "/v1/tasks", headers=h, json={"request": haiku("once")})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    other = httpx.post(gw.url + "/v1/tasks", headers=h, json={"request": haiku("something else")})
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["error"]["message"]
    wait_for(gw, acct["key"], first.json()["id"])
    assert statuses(gw, acct["account_id"]) == {"succeeded": 1}
    assert [r.json()["messages"][0]["content"] for r in fake.requests_to("/anthropic/v1/messages")] == ["once"]


def test_the_list_is_newest_first_paginated_by_cursor_and_filtered_by_status(gw: Gateway) -> None:
    acct = gw.account(usd="10")
    ids = [submit(gw, acct["key"], haiku(f"n{i}"))["id"] for i in range(5)]
    for i in ids:
        wait_for(gw, acct["key"], i)
    dry = gw.account(usd="0")  # a second account, whose task waits for money: out of this one's list
    waiting = submit(gw, dry["key"], haiku())
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        r = httpx.get(gw.url + "/v1/tasks", headers={"x-api-key": acct["key"]}, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        seen += [t["id"] for t in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == list(reversed(ids)) and pages == 3

    def listed(key: str, status: str) -> list[str]:
        r = httpx.get(gw.url + "/v1/tasks", headers={"x-api-key": key}, params={"status": status})
        return [t["id"] for t in r.json()["data"]]

    assert listed(acct["key"], "succeeded") == list(reversed(ids))
    assert listed(acct["key"], "queued") == []
    assert listed(dry["key"], "queued") == [waiting["id"]]
    assert listed(dry["key"], "succeeded") == []
    bad = httpx.get(gw.url + "/v1/tasks", headers={"x-api-key": acct["key"]}, params={"status": "done"})
    assert bad.status_code == 400 and "status" in bad.json()["error"]["message"]


def test_canceling_a_queued_task_ends_it_at_once_and_it_is_never_run_or_billed(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="0")  # an empty wallet keeps it queued
    t = submit(gw, acct["key"], haiku())
    time.sleep(0.5)
    assert get(gw, acct["key"], t["id"])["status"] == "queued"
    r = httpx.post(f"{gw.url}/v1/tasks/{t['id']}/cancel", headers={"x-api-key": acct["key"]})
    assert r.status_code == 200 and r.json()["status"] == "canceled" and r.json()["cost_usd"] == "0"
    gw.cli("wallet", "topup", acct["email"], "5")
    time.sleep(1)
    assert get(gw, acct["key"], t["id"])["status"] == "canceled"
    assert fake.requests_to("/anthropic/v1/messages") == []
    assert gw.query("SELECT COUNT(*) FROM ledger WHERE account_id = ? AND kind = 'charge'", acct["account_id"]) == [(0,)]


def test_canceling_a_running_task_stops_its_request_unbilled(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="10")
    fake.queue(json_answer({"never": "read"}, delay_before=30))
    t = submit(gw, acct["key"], haiku())
    wait_for(gw, acct["key"], t["id"], ("running",))
    deadline = time.time() + 5
    while not fake.requests_to("/anthropic/v1/messages"):
        assert time.time() < deadline
        time.sleep(0.02)
    r = httpx.post(f"{gw.url}/v1/tasks/{t['id']}/cancel", headers={"x-api-key": acct["key"]})
    assert r.json()["status"] == "canceled"
    deadline = time.time() + 5
    while not gw.query("SELECT status, cost FROM usage_records WHERE task_id = ?", t["id"]):
        assert time.time() < deadline, "the stopped request left no usage record"
        time.sleep(0.05)
    assert gw.query("SELECT status, cost FROM usage_records WHERE task_id = ?", t["id"]) == [("failed", 0)]
    assert gw.query("SELECT COUNT(*) FROM ledger WHERE account_id = ? AND kind = 'charge'", acct["account_id"]) == [(0,)]
    assert gw.query("SELECT COUNT(*) FROM holds WHERE account_id = ?", acct["account_id"]) == [(0,)]
    assert get(gw, acct["key"], t["id"])["status"] == "canceled"


def test_a_key_sees_only_its_own_accounts_tasks(gw: Gateway) -> None:
    owner, stranger = gw.account(usd="10"), gw.account(usd="10")
    t = submit(gw, owner["key"], haiku())
    for method, path in (("GET", f"/v1/tasks/{t['id']}"), ("POST", f"/v1/tasks/{t['id']}/cancel")):
        r = httpx.request(method, gw.url + path, headers={"x-api-key": stranger["key"]})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    listed = httpx.get(gw.url + "/v1/tasks", headers={"x-api-key": stranger["key"]}).json()
    assert listed["data"] == [] and listed["has_more"] is False
    assert wait_for(gw, owner["key"], t["id"])["status"] == "succeeded"


def test_batches_point_to_the_tasks_endpoint(gw: Gateway) -> None:
    r = httpx.post(gw.url + "/v1/messages/batches", headers={"x-api-key": "x", **V}, json={})
    assert r.status_code == 404
    assert "POST /v1/tasks" in r.json()["error"]["message"]
