"""``bytespike wallet show`` and ``bytespike usage``: the real CLI against the gateway's database."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from typing import Any

import anthropic
import httpx

from conftest import Gateway
from fakeupstream import FakeUpstream, json_answer

V = {"anthropic-version": "2023-06-01"}
NANO = 10**9
# claude-haiku-4-5: input 1, output 5, cache read 0.1, cache write 1.25 (5m) / 2 (1h) USD per million tokens
HAIKU_NANO_PER_TOKEN = {"input": 1000, "output": 5000, "cache_read": 100, "w5m": 1250, "w1h": 2000}


def haiku_answer(input: int, output: int, cache_read: int = 0, w5m: int = 0, w1h: int = 0, **kw: Any):  # type: ignore[no-untyped-def]
    usage = {"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": cache_read,
             "cache_creation_input_tokens": w5m + w1h,
             "cache_creation": {"ephemeral_5m_input_tokens": w5m, "ephemeral_1h_input_tokens": w1h}}
    return json_answer({"id": "msg_cli", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
                        "usage": usage}, **kw)


def haiku_cost(input: int, output: int, cache_read: int = 0, w5m: int = 0, w1h: int = 0) -> int:
    p = HAIKU_NANO_PER_TOKEN
    return input * p["input"] + output * p["output"] + cache_read * p["cache_read"] + w5m * p["w5m"] + w1h * p["w1h"]


def ask(gw: Gateway, key: str, max_tokens: int = 100) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", headers={**V, "x-api-key": key}, timeout=30,
                      json={"model": "claude-haiku-4-5", "max_tokens": max_tokens,
                            "messages": [{"role": "user", "content": "hi"}]})


def new_person(gw: Gateway, usd: str, *limits: str) -> tuple[str, str]:
    """A person made with the CLI, topped up and given a key; returns (email, key)."""
    email = f"cli-{time.time_ns()}@example.com"
    gw.cli("users", "create", email)
    gw.cli("wallet", "topup", email, usd, "--note", "invoice 7")
    args = [a for lim in limits for a in ("--limit", lim)]
    key = json.loads(gw.cli("keys", "create", email, "--group", "claude-default", "--name", "laptop", *args,
                            "--json").stdout)
    return email, key["key"]


def test_wallet_show_lists_balance_holds_and_ledger_exactly(gateway: Gateway, fake: FakeUpstream) -> None:
    email, key = new_person(gateway, "2.5")
    gateway.cli("wallet", "topup", email, "0.000000007", "--note", "odd change")
    fake.queue(haiku_answer(1200, 300, cache_read=5000, w5m=333, w1h=77))
    r = ask(gateway, key)
    assert r.status_code == 200
    rid = r.headers["request-id"]
    gateway.wait_settled([rid])
    cost = haiku_cost(1200, 300, 5000, 333, 77)
    w = json.loads(gateway.cli("wallet", "show", email, "--json").stdout)
    balance = 2_500_000_000 + 7 - cost
    assert w["account"] == email
    assert Decimal(w["balance_usd"]) * NANO == balance
    assert w["held_usd"] == "0" and w["available_usd"] == w["balance_usd"]
    assert [(e["kind"], Decimal(e["amount_usd"]) * NANO, e["request_id"]) for e in w["ledger"]] == [
        ("charge", -cost, rid), ("topup", 7, None), ("topup", 2_500_000_000, None)]
    assert [e["note"] for e in w["ledger"][1:]] == ["odd change", "invoice 7"]
    assert Decimal(w["ledger"][0]["balance_usd"]) * NANO == balance
    table = gateway.cli("wallet", "show", email).stdout
    assert f"balance {w['balance_usd']} USD" in table and "held 0 USD" in table
    for text in ("kind", "amount (USD)", "charge", "topup", "invoice 7", w["ledger"][0]["amount_usd"]):
        assert text in table, text
    assert len(json.loads(gateway.cli("wallet", "show", email, "--json", "--limit", "1").stdout)["ledger"]) == 1


def test_wallet_show_counts_the_hold_of_a_request_in_flight(gateway: Gateway, fake: FakeUpstream) -> None:
    email, key = new_person(gateway, "1")
    fake.queue(haiku_answer(10, 10, delay_before=4))
    worker = threading.Thread(target=ask, args=(gateway, key, 2000))
    worker.start()
    try:
        deadline = time.time() + 3
        while True:
            w = json.loads(gateway.cli("wallet", "show", email, "--json").stdout)
            if w["held_usd"] != "0" or time.time() > deadline:
                break
        sent = fake.received[-1].body
        hold = (-(-len(sent) // 3) + 512) * HAIKU_NANO_PER_TOKEN["w1h"] + 2000 * HAIKU_NANO_PER_TOKEN["output"]
        assert Decimal(w["held_usd"]) * NANO == hold
        assert Decimal(w["available_usd"]) * NANO == NANO - hold
        assert w["balance_usd"] == "1"
    finally:
        worker.join()


def test_usage_shows_spend_per_model_and_each_keys_windows(gateway: Gateway, fake: FakeUpstream) -> None:
    email, key = new_person(gateway, "5", "5h:usd=2,requests=40", "1d:tokens=90000")
    fake.queue(haiku_answer(1000, 200), haiku_answer(3000, 100, cache_read=2000))
    rids = [ask(gateway, key).headers["request-id"], ask(gateway, key).headers["request-id"]]
    fake.queue(json_answer({"type": "error", "error": {"type": "api_error", "message": "boom"}}, status=500))
    failed = ask(gateway, key)
    assert failed.status_code == 500
    c = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    c.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    gateway.wait_settled([*rids, failed.headers["request-id"]])
    time.sleep(0.3)
    u = json.loads(gateway.cli("usage", email, "--since", "1h", "--json").stdout)
    haiku_total = haiku_cost(1000, 200) + haiku_cost(3000, 100, 2000)
    by_model = {m["model"]: m for m in u["models"]}
    assert set(by_model) == {"claude-haiku-4-5", "claude-sonnet-4-6"}
    h = by_model["claude-haiku-4-5"]
    assert (h["requests"], h["failed"], h["input_tokens"], h["output_tokens"], h["cache_read_tokens"]) == (
        3, 1, 4000, 300, 2000)
    assert Decimal(h["cost_usd"]) * NANO == haiku_total
    sonnet = Decimal(by_model["claude-sonnet-4-6"]["cost_usd"]) * NANO
    assert sonnet > 0
    assert Decimal(u["total_usd"]) * NANO == haiku_total + sonnet and u["requests"] == 4
    (k,) = u["keys"]
    assert k["name"] == "laptop" and k["group"] == "claude-default"
    w = {x["window"]: x for x in k["windows"]}
    assert list(w) == ["5h", "1d", "7d"]
    assert Decimal(w["5h"]["spend_usd"]) * NANO == haiku_total + sonnet
    assert (w["5h"]["usd_cap"], w["5h"]["requests"], w["5h"]["requests_cap"]) == ("2", 4, 40)  # failures count as requests
    assert w["1d"]["tokens_cap"] == 90000 and w["1d"]["tokens"] >= 4000 + 300 + 2000
    assert w["7d"]["usd_cap"] is None and w["5h"]["resets_at"].endswith("Z")
    table = gateway.cli("usage", email, "--since", "1h").stdout
    for text in ("claude-haiku-4-5", "claude-sonnet-4-6", f"total: {u['total_usd']} USD over 4 requests",
                 "laptop", "of 2", "4 of 40", "of 90000"):
        assert text in table, (text, table)


def test_usage_refuses_a_bad_since(gateway: Gateway) -> None:
    email, _ = new_person(gateway, "1")
    res = gateway.cli("usage", email, "--since", "yesterday", check=False)
    assert res.returncode == 1 and "yesterday" in res.stderr


def test_wallet_show_of_an_unknown_account_says_so(gateway: Gateway) -> None:
    res = gateway.cli("wallet", "show", "ghost@example.com", "--json", check=False)
    assert res.returncode == 1 and "ghost@example.com" in res.stderr and not res.stdout
