"""Premium features (server tools, priority tier, fast mode, MCP servers, the 1M-context beta) are
refused unless the key's group offers them, and billed at the group's price when it does."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import httpx
import orjson
import pytest

from conftest import Gateway
from conftest import test_config as gateway_config
from fakeupstream import FakeUpstream
from greedy import Greedy
from test_attack_money import assert_square, burst

V = {"anthropic-version": "2023-06-01"}
NANO = 10**9
SEARCH_USD_PER_1000 = 10
PRIORITY = 2
FEATURES = {"server_tools": SEARCH_USD_PER_1000, "priority_tier": PRIORITY, "fast_mode": 6, "mcp_servers": 1,
            "context_1m": 2}
HAIKU = {"input": Fraction(1), "output": Fraction(5)}  # USD per million tokens, defaults.yaml


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("premium")
    cfg = gateway_config(fake.url, d / "bytespike.db")
    cfg["groups"]["premium"] = {"models": ["*"], "multiplier": 1, "features": FEATURES}
    cfg["groups"]["plain"] = {"models": ["*"], "multiplier": 1}
    g = Gateway(d, cfg).start()
    yield g
    g.stop()


def post(gw: Gateway, key: str, body: dict[str, Any], headers: dict[str, str] | None = None,
         path: str = "/v1/messages") -> httpx.Response:
    auth = {**V, "x-api-key": key} if path == "/v1/messages" else {"authorization": f"Bearer {key}"}
    return httpx.post(gw.url + path, content=orjson.dumps(body), timeout=30,
                      headers={**auth, "content-type": "application/json", **(headers or {})})


def base(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}], **extra}


SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
PREMIUM_CASES = [
    ("server tools", base(tools=[SEARCH]), {}, "/v1/messages"),
    ("priority tier", base(service_tier="priority"), {}, "/v1/messages"),
    ("fast mode", base(speed="fast"), {"anthropic-beta": "fast-mode-2026-02-01"}, "/v1/messages"),
    ("mcp servers", base(mcp_servers=[{"type": "url", "url": "https://mcp.example", "name": "x"}]),
     {"anthropic-beta": "mcp-client-2025-04-04"}, "/v1/messages"),
    ("context 1m", base(), {"anthropic-beta": "context-1m-2025-08-07"}, "/v1/messages"),
    ("server tools", {"model": "gpt-5-5-chat", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}],
                      "web_search_options": {}}, {}, "/v1/chat/completions"),
    ("priority tier", {"model": "gpt-5-5-chat", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}],
                       "service_tier": "priority"}, {}, "/v1/chat/completions"),
]


@pytest.mark.parametrize(("feature", "body", "headers", "path"), PREMIUM_CASES,
                         ids=[f"{c[0]} on {c[3]}" for c in PREMIUM_CASES])
def test_a_premium_feature_the_group_does_not_offer_is_refused_before_the_upstream(
        gw: Gateway, fake: FakeUpstream, feature: str, body: dict[str, Any], headers: dict[str, str],
        path: str) -> None:
    fake.handler = Greedy()
    acct = gw.account(usd="5", group="plain")
    before = len(fake.received)
    r = post(gw, acct["key"], body, headers, path)
    assert r.status_code == 403, r.text
    assert feature in r.text
    assert len(fake.received) == before


def token_cost_nano(input_tokens: int, output_tokens: int, multiplier: int = 1) -> int:
    usd = multiplier * (input_tokens * HAIKU["input"] + output_tokens * HAIKU["output"]) / 10**6
    return math.floor(usd * NANO + Fraction(1, 2))


def charged(gw: Gateway, r: httpx.Response) -> int:
    rid = r.headers["request-id"]
    gw.wait_settled([rid])
    return -gw.query("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE request_id = ?", rid)[0][0]


def test_server_tool_uses_are_billed_per_use_at_the_groups_price(gw: Gateway, fake: FakeUpstream) -> None:
    fake.handler = greedy = Greedy()
    acct = gw.account(usd="5", group="premium")
    r = post(gw, acct["key"], base(tools=[SEARCH]))
    assert r.status_code == 200, r.text
    s = greedy.served[-1]
    assert s.server_tool_uses == 3
    per_use = SEARCH_USD_PER_1000 * NANO // 1000
    assert charged(gw, r) == token_cost_nano(s.input_tokens, s.output_tokens) + 3 * per_use


def test_the_priority_tier_is_billed_at_the_groups_multiplier(gw: Gateway, fake: FakeUpstream) -> None:
    fake.handler = greedy = Greedy()
    acct = gw.account(usd="5", group="premium")
    r = post(gw, acct["key"], base(service_tier="priority"))
    assert r.status_code == 200, r.text
    s = greedy.served[-1]
    assert charged(gw, r) == token_cost_nano(s.input_tokens, s.output_tokens, PRIORITY)


def test_concurrent_greedy_web_searches_never_overdraw_a_small_wallet(gw: Gateway, fake: FakeUpstream) -> None:
    fake.handler = Greedy()
    acct = gw.account(usd="0.2", group="premium")
    got = asyncio.run(burst(gw, acct["key"], 100, base(max_tokens=1000, tools=[{**SEARCH, "max_uses": 5}])))
    statuses = {r.status_code for r in got}
    assert statuses <= {200, 402} and 200 in statuses and 402 in statuses
    assert_square(gw, acct, len(got))
