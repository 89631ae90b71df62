"""Money under attack: a greedy upstream that spends every token allowed, never a wallet below zero.

The greedy upstream (``greedy.py``) generates exactly ``max_tokens`` tokens, so every charge is
near its hold: a charge that admission fails to see shows up at once as an overdraft.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conftest import Gateway
from fakeupstream import Answer, FakeUpstream, json_answer
from greedy import Greedy

V = {"anthropic-version": "2023-06-01"}
NANO = 10**9


def books(gw: Gateway, account_id: str) -> dict[str, Any]:
    q = gw.query
    return {
        "sum": q("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account_id = ?", account_id)[0][0],
        "lowest": q("SELECT COALESCE(MIN(balance_after), 0) FROM ledger WHERE account_id = ?", account_id)[0][0],
        "charged": -q("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account_id = ? AND kind = 'charge'",
                      account_id)[0][0],
        "recorded": q("SELECT COALESCE(SUM(cost), 0) FROM usage_records WHERE account_id = ?", account_id)[0][0],
        "holds": q("SELECT COUNT(*) FROM holds WHERE account_id = ?", account_id)[0][0],
        "records": q("SELECT COUNT(*) FROM usage_records WHERE account_id = ?", account_id)[0][0],
        "unbilled_served": q("SELECT COUNT(*) FROM usage_records WHERE account_id = ? AND status = 'succeeded' "
                             "AND (cost = 0 OR output_tokens = 0)", account_id)[0][0],
    }


async def burst(gw: Gateway, key: str, n: int, body: dict[str, Any], path: str = "/v1/messages",
                headers: dict[str, str] | None = None) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=gw.url, timeout=60, limits=limits,
                                 headers={**V, "x-api-key": key, **(headers or {})}) as c:
        return list(await asyncio.gather(*(c.post(path, json=body) for _ in range(n))))


def wallet(gw: Gateway, key: str) -> dict[str, str]:
    return httpx.get(gw.url + "/v1/usage", headers={"x-api-key": key}, timeout=10).json()["wallet"]


def assert_square(gw: Gateway, acct: dict[str, Any], requests: int) -> dict[str, Any]:
    """No wallet below zero, one record a request, records equal ledger, nothing held."""
    gw.wait_settled(account_id=acct["account_id"], count=requests, timeout=60)
    b = books(gw, acct["account_id"])
    assert b["lowest"] >= 0 and b["sum"] >= 0, b
    assert b["records"] == requests, b
    assert b["charged"] == b["recorded"], b
    assert b["unbilled_served"] == 0, b
    w = wallet(gw, acct["key"])
    assert w["held_usd"] == "0", w
    assert b["holds"] == 0 or w["held_usd"] == "0"
    return b


def test_300_concurrent_greedy_requests_against_a_five_cent_wallet_never_overdraw_in_any_burst(
        gateway: Gateway, fake: FakeUpstream) -> None:
    fake.handler = greedy = Greedy()
    acct = gateway.account(usd="0.05")
    body = {"model": "claude-haiku-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "spend it"}]}
    total = 0
    for round_ in range(4):
        if round_:
            gateway.cli("wallet", "topup", acct["email"], "0.05")
        got = asyncio.run(burst(gateway, acct["key"], 300, body))
        total += len(got)
        statuses = {r.status_code for r in got}
        assert statuses <= {200, 402}, [r.text for r in got if r.status_code not in (200, 402)][:3]
        assert 200 in statuses and 402 in statuses
        b = assert_square(gateway, acct, total)
    # Every served answer was a full 1,000 tokens, and each was charged.
    assert all(s.output_tokens == 1000 for s in greedy.served)
    assert b["charged"] >= len(greedy.served) * 1000 * 5 * 1000  # 5 USD per million output tokens


def test_greedy_requests_one_after_another_never_overdraw(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.handler = Greedy()
    acct = gateway.account(usd="0.05")
    body = {"model": "claude-haiku-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "spend it"}]}
    statuses = []
    with httpx.Client(base_url=gateway.url, headers={**V, "x-api-key": acct["key"]}, timeout=30) as c:
        for _ in range(40):
            statuses.append(c.post("/v1/messages", json=body).status_code)
    assert set(statuses) == {200, 402}
    assert statuses.index(402) >= 5
    assert_square(gateway, acct, len(statuses))


BAD_USAGE = [7.0, -5, "12", None, True, 2**62, {"n": 1}, [3]]


@pytest.mark.parametrize("bad", BAD_USAGE, ids=repr)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_reporting_nonsense_usage_is_not_served_free_and_leaks_no_hold_or_slot(
        gateway: Gateway, fake: FakeUpstream, bad: Any, stream: bool) -> None:
    acct = gateway.account(usd="1", max_concurrency=1)
    usage = {"input_tokens": bad, "output_tokens": bad}
    msg = {"id": "msg_bad", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
           "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": usage}
    if stream:
        import orjson
        start = {**msg, "content": [], "stop_reason": None, "usage": {"input_tokens": bad, "output_tokens": 1}}
        frames = [b"event: message_start\ndata: " + orjson.dumps({"type": "message_start", "message": start}) + b"\n\n",
                  b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                  b'"content_block":{"type":"text","text":""}}\n\n',
                  b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                  b'"delta":{"type":"text_delta","text":"hi"}}\n\n',
                  b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
                  b"event: message_delta\ndata: " + orjson.dumps({"type": "message_delta", "delta": {
                      "stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": bad}}) + b"\n\n",
                  b'event: message_stop\ndata: {"type":"message_stop"}\n\n']
        fake.queue(Answer(chunks=frames, content_type="text/event-stream"))
    else:
        fake.queue(json_answer(msg))
    body = {"model": "claude-haiku-4-5", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}
    h = {**V, "x-api-key": acct["key"]}
    r = httpx.post(gateway.url + "/v1/messages", headers=h, json=body, timeout=30)
    rid = r.headers["request-id"]
    gateway.wait_settled([rid])
    rec = gateway.query("SELECT status, cost, output_tokens FROM usage_records WHERE request_id = ?", rid)[0]
    charged = gateway.query("SELECT COALESCE(-SUM(amount), 0) FROM ledger WHERE request_id = ?", rid)[0][0]
    assert rec[1] == charged
    if rec[0] == "succeeded":
        # Delivered: billed from what was really sent, never free.
        assert charged > 0 and rec[2] > 0
    else:
        # Not delivered as a success: the client saw an error, nothing billed.
        assert rec[0] == "failed" and charged == 0
        assert r.status_code >= 500 or b"event: error" in r.content
    # No hold and no concurrency slot left behind: the key serves its next request.
    assert wallet(gateway, acct["key"])["held_usd"] == "0"
    fake.handler = Greedy()
    ok = httpx.post(gateway.url + "/v1/messages", headers=h, timeout=30,
                    json={"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert ok.status_code == 200, ok.text


def count_tokens(gw: Gateway, key: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages/count_tokens", headers={**V, "x-api-key": key}, timeout=30,
                      json={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]})


def test_count_tokens_needs_a_funded_wallet(gateway: Gateway) -> None:
    empty = gateway.account(usd="0")
    r = count_tokens(gateway, empty["key"])
    assert r.status_code == 402 and r.json()["error"]["type"] == "billing_error"
    funded = gateway.account(usd="1")
    assert count_tokens(gateway, funded["key"]).status_code == 200


def test_count_tokens_counts_against_the_keys_request_cap(gateway: Gateway) -> None:
    acct = gateway.account(usd="1", limits=["1h:requests=3"])
    statuses = [count_tokens(gateway, acct["key"]).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    r = httpx.post(gateway.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]}, timeout=30,
                   json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 429


def test_failed_requests_at_the_upstream_count_against_a_request_cap(gateway: Gateway, fake: FakeUpstream) -> None:
    acct = gateway.account(usd="1", limits=["1m:requests=3"])
    fake.handler = lambda got: json_answer({"type": "error", "error": {"type": "api_error", "message": "x"}}, 500)
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client(base_url=gateway.url, headers={**V, "x-api-key": acct["key"]}, timeout=30) as c:
        statuses = [c.post("/v1/messages", json=body).status_code for _ in range(10)]
    assert statuses[3:] == [429] * 7, statuses
    assert 429 not in statuses[:3]
    assert len(fake.received) == 3  # one deployment: one upstream call per admitted request


@pytest.mark.parametrize(("unit", "route"), [("字", "/v1/messages"), ("字", "/v1/chat/completions"),
                                             ("мир ", "/v1/messages")], ids=["cjk-messages", "cjk-chat", "cyrillic"])
def test_a_client_leaving_a_stream_early_pays_for_what_it_was_sent_at_its_scripts_rate(
        gateway: Gateway, fake: FakeUpstream, unit: str, route: str) -> None:
    """Each streamed token is one CJK character (or a 4-letter Cyrillic word of ~2 tokens here
    counted as one): the estimate must not fall below the tokens the client received."""
    fake.handler = Greedy(unit=unit, chunk_tokens=100, delay_between=0.05)
    acct = gateway.account(usd="5")
    h = {**V, "x-api-key": acct["key"]} if route == "/v1/messages" else {"authorization": f"Bearer {acct['key']}"}
    body = {"model": "claude-haiku-4-5", "max_tokens": 4000, "stream": True,
            "messages": [{"role": "user", "content": "write"}]}
    received = ""
    with httpx.Client(timeout=30) as c, c.stream("POST", gateway.url + route, headers=h, json=body) as r:
        rid = r.headers["request-id"]
        for text in r.iter_text():
            received += text
            if received.count(unit) >= 1000:
                break
    gateway.wait_settled([rid])
    status, output = gateway.query("SELECT status, output_tokens FROM usage_records WHERE request_id = ?", rid)[0]
    assert status == "client_disconnected"
    sent_tokens = received.count(unit)
    assert output >= sent_tokens, (output, sent_tokens)
    assert output < 4000
