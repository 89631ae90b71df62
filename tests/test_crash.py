"""``kill -9`` of the gateway between the upstream's answer and the charge.

The gateway runs with ``BYTESPIKE_SETTLE_DELAY`` (its writer waits before writing settlements, so
a kill can land after the client has its answer and before the charge) and a short
``BYTESPIKE_HOLD_SECONDS``. After a restart nothing is charged twice, the dead process's holds are
released at once (the SQLite process lock proves it dead) and their requests recorded as
``interrupted``, and the balance is the ledger's sum.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Gateway
from conftest import test_config as gateway_config
from fakeupstream import Answer, FakeUpstream, json_answer

V = {"anthropic-version": "2023-06-01"}
NANO = 10**9
HOLD_SECONDS = 3
SLOW_HOLD_SECONDS = 30  # long enough to restart before they expire
# haiku: 1 USD per million input tokens, 5 per million output tokens
COST = (100 * 1 + 50 * 5) * 1000  # nano-USD for 100 input and 50 output tokens


def answer() -> Answer:
    return json_answer({"id": "msg_crash", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
                        "usage": {"input_tokens": 100, "output_tokens": 50}})


@pytest.fixture()
def crashy(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
           ) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("crash")
    hold = getattr(request, "param", HOLD_SECONDS)
    gw = Gateway(d, gateway_config(fake.url, d / "bytespike.db"),
                 env={"BYTESPIKE_SETTLE_DELAY": "2", "BYTESPIKE_HOLD_SECONDS": str(hold)}).start()
    yield gw
    gw.stop()


def ask(gw: Gateway, key: str, fake: FakeUpstream) -> str:
    fake.queue(answer())
    r = httpx.post(gw.url + "/v1/messages", headers={**V, "x-api-key": key}, timeout=30,
                   json={"model": "claude-haiku-4-5", "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    return r.headers["request-id"]


def books(gw: Gateway, account_id: str) -> dict[str, Any]:
    q = gw.query
    return {
        "ledger": q("SELECT kind, amount, request_id FROM ledger WHERE account_id = ? ORDER BY id", account_id),
        "sum": q("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account_id = ?", account_id)[0][0],
        "balance": q("SELECT balance_after FROM ledger WHERE account_id = ? ORDER BY id DESC LIMIT 1",
                     account_id)[0][0],
        "holds": sorted(r[0] for r in q("SELECT id FROM holds WHERE account_id = ?", account_id)),
        "records": sorted(r[0] for r in q("SELECT request_id FROM usage_records WHERE account_id = ?", account_id)),
        "duplicate_charges": q("SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM ledger "
                               "WHERE request_id IS NOT NULL")[0][0],
    }


def crash_with_unsettled_answers(gw: Gateway, fake: FakeUpstream, acct: dict[str, Any]) -> tuple[str, list[str]]:
    """One request settled, then two answered and one mid-stream when the gateway is killed.
    Returns the settled request id and the ids left unsettled."""
    settled = ask(gw, acct["key"], fake)
    gw.wait_settled([settled])
    answered = [ask(gw, acct["key"], fake), ask(gw, acct["key"], fake)]
    # A stream in progress at the moment of the kill.
    frames = ['event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message",'
              '"role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,'
              '"usage":{"input_tokens":100,"output_tokens":1}}}\n\n'] + [
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"abcd"}}\n\n'] * 50
    fake.queue(Answer(chunks=[f.encode() for f in frames], content_type="text/event-stream", delay_between=0.2))
    streaming = threading.Event()
    stream_id: list[str] = []

    def read_stream() -> None:
        try:
            with httpx.stream("POST", gw.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]}, timeout=30,
                              json={"model": "claude-haiku-4-5", "max_tokens": 200, "stream": True,
                                    "messages": [{"role": "user", "content": "hi"}]}) as r:
                stream_id.append(r.headers["request-id"])
                for _ in r.iter_raw():
                    streaming.set()
        except httpx.HTTPError:
            pass  # the gateway died under it

    reader = threading.Thread(target=read_stream)
    reader.start()
    assert streaming.wait(5)
    # Hold rows are written behind admission (a request that settles within a quarter second never
    # needs one): kill once the open stream's hold row is down.
    deadline = time.time() + 5
    while not set(stream_id) <= set(books(gw, acct["account_id"])["holds"]) and time.time() < deadline:
        time.sleep(0.01)
    before = books(gw, acct["account_id"])
    gw.stop(signal.SIGKILL)
    reader.join(10)
    unsettled = [*answered, *stream_id]
    # The kill landed in the gap: the answers went out, their charges and records did not.
    assert before["records"] == [settled]
    assert set(stream_id) <= set(before["holds"]) <= set(unsettled)
    return settled, unsettled


def assert_recovered(gw: Gateway, acct: dict[str, Any], settled: str, topup: int) -> None:
    b = books(gw, acct["account_id"])
    assert b["ledger"] == [("topup", topup, None), ("charge", -COST, settled)]
    assert b["duplicate_charges"] == 0
    assert b["sum"] == b["balance"] == topup - COST
    assert b["holds"] == []
    w = json.loads(gw.cli("wallet", "show", acct["email"], "--json").stdout)
    assert w["held_usd"] == "0"
    assert w["available_usd"] == w["balance_usd"]


def holds_released(gw: Gateway, acct: dict[str, Any], within: float = 3.0) -> None:
    """The start-up recovery has run: no hold of the account is left (a moment's grace for the
    database read to see the new process's first transaction)."""
    deadline = time.time() + within
    while gw.query("SELECT COUNT(*) FROM holds WHERE account_id = ?", acct["account_id"])[0][0]:
        assert time.time() < deadline, "the dead process's holds were not released at start"
        time.sleep(0.05)


def assert_interrupted(gw: Gateway, acct: dict[str, Any], settled: str, unsettled: list[str], stream_id: str) -> None:
    """The open stream (whose hold row was down) is recorded as interrupted, uncharged; the
    answers whose hold rows were never written leave no record; nothing else is recorded."""
    rows = gw.query("SELECT request_id, status, cost, error_type FROM usage_records WHERE account_id = ?",
                    acct["account_id"])
    by_id = {r[0]: r[1:] for r in rows}
    assert by_id[settled][0] == "succeeded"
    assert by_id[stream_id] == ("interrupted", 0, "gateway_stopped")
    assert set(by_id) <= {settled, *unsettled}


def test_kill_9_before_the_charge_then_restart_after_expiry_releases_the_holds_at_start(
        crashy: Gateway, fake: FakeUpstream) -> None:
    acct = crashy.account(usd="10")
    settled, unsettled = crash_with_unsettled_answers(crashy, fake, acct)
    expiry = max(r[0] for r in crashy.query("SELECT expires_at FROM holds"))
    time.sleep(max(expiry - time.time(), 0) + 0.2)
    crashy.env["BYTESPIKE_HOLD_SECONDS"] = "3600"  # the sweep would not get there: only the start can
    crashy.start()
    holds_released(crashy, acct)
    assert_recovered(crashy, acct, settled, 10 * NANO)
    assert_interrupted(crashy, acct, settled, unsettled, unsettled[-1])
    # Nothing is charged later either, and the gateway bills normally again.
    after = ask(crashy, acct["key"], fake)
    crashy.wait_settled([after])
    time.sleep(2.5)
    b = books(crashy, acct["account_id"])
    assert [r[2] for r in b["ledger"] if r[0] == "charge"] == [settled, after]
    assert b["sum"] == b["balance"] == 10 * NANO - 2 * COST


@pytest.mark.parametrize("crashy", [SLOW_HOLD_SECONDS], indirect=True)
def test_kill_9_then_immediate_restart_releases_the_dead_processs_holds_at_once_and_records_them(
        crashy: Gateway, fake: FakeUpstream) -> None:
    acct = crashy.account(usd="10")
    settled, unsettled = crash_with_unsettled_answers(crashy, fake, acct)
    expiry = max(r[0] for r in crashy.query("SELECT expires_at FROM holds"))
    crashy.env["BYTESPIKE_SETTLE_DELAY"] = "0"
    crashy.start()
    assert expiry > time.time(), "restarted too slowly for this test"
    # The process lock proved the old gateway dead: its holds are gone before they expire.
    holds_released(crashy, acct)
    assert time.time() < expiry
    wallet_now = httpx.get(crashy.url + "/v1/usage", headers={"x-api-key": acct["key"]}).json()["wallet"]
    assert wallet_now["held_usd"] == "0"
    assert_recovered(crashy, acct, settled, 10 * NANO)
    assert_interrupted(crashy, acct, settled, unsettled, unsettled[-1])
    assert "released 1 hold(s)" in crashy.log.read_text()
