"""Rolling windows through a running gateway, on a clock the test moves.

The gateway runs with ``BYTESPIKE_CLOCK_FILE``; each test freezes billing's clock at chosen
instants (``@epoch`` in the file), so "five hours later" and "one second too early" are exact.
Costs are chosen by the fake upstream's usage and computed by hand from defaults.yaml.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import math
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import yaml

from conftest import BUILTIN, Gateway
from conftest import test_config as gateway_config
from fakeupstream import Answer, FakeUpstream, json_answer

V = {"anthropic-version": "2023-06-01"}
CATALOGUE = yaml.safe_load(BUILTIN.read_text())
NANO = 10**9
HOUR, DAY = 3600, 86400
T0 = 2_000_000_000  # a whole second, so "ages out at T0 + 5h" is exact


# ---------------------------------------------------------------- hand computation


def price_of(model: str) -> dict[str, Fraction]:
    return {k: Fraction(str(v)) for k, v in CATALOGUE["models"][model]["price"].items()}


def dearest_input(model: str) -> Fraction:
    p = price_of(model)
    return max(p["input"], p["cache_write"], p["cache_write_1h"], p["cache_read"])


def estimate(body: bytes) -> int:
    return -(-len(body) // 3) + 512


def hold_nano(model: str, body: bytes, max_tokens: int) -> int:
    usd = (estimate(body) * dearest_input(model) + max_tokens * price_of(model)["output"]) / 10**6
    return math.ceil(usd * NANO)


def cost_nano(model: str, input: int, output: int) -> int:
    p = price_of(model)
    return math.floor((input * p["input"] + output * p["output"]) / 10**6 * NANO + Fraction(1, 2))


def affordable(model: str, body: bytes, available_nano: int) -> int:
    """The largest max_tokens whose hold fits in ``available_nano`` (multiplier 1)."""
    budget = Fraction(available_nano, NANO) * 10**6 - estimate(body) * dearest_input(model)
    return math.floor(budget / price_of(model)["output"])


def rfc3339(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def usd_text(nano: int) -> str:
    whole, frac = divmod(nano, NANO)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------- the gateway and its clock


class Clocked:
    def __init__(self, gw: Gateway, clock_file: Path) -> None:
        self.gw = gw
        self.clock_file = clock_file

    def at(self, t: float) -> None:
        """Freeze the gateway's billing clock at ``t`` (written whole: a reader never sees it half done)."""
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"@{t}")
        tmp.replace(self.clock_file)


@pytest.fixture(scope="module")
def lim(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clocked]:
    d = tmp_path_factory.mktemp("limits")
    clock = d / "clock"
    clock.write_text(f"@{T0}")
    gw = Gateway(d, gateway_config(fake.url, d / "bytespike.db"), env={"BYTESPIKE_CLOCK_FILE": str(clock)}).start()
    yield Clocked(gw, clock)
    gw.stop()


def body(model: str = "claude-haiku-4-5", max_tokens: int = 4000, **extra: Any) -> bytes:
    return json.dumps({"model": model, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "hi"}], **extra}).encode()


def answer(input: int, output: int, model: str = "claude-haiku-4-5", **kw: Any) -> Answer:
    return json_answer({"id": "msg_lim", "type": "message", "role": "assistant", "model": model,
                        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                        "stop_sequence": None, "usage": {"input_tokens": input, "output_tokens": output}}, **kw)


def post(gw: Gateway, key: str, content: bytes) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", content=content, timeout=30,
                      headers={**V, "x-api-key": key, "content-type": "application/json"})


def spend(lim: Clocked, fake: FakeUpstream, key: str, t: int, input: int, output: int,
          content: bytes | None = None) -> httpx.Response:
    lim.at(t)
    fake.queue(answer(input, output))
    r = post(lim.gw, key, content or body())
    assert r.status_code == 200, r.text
    lim.gw.wait_settled([r.headers["request-id"]])  # settled at t, before the clock moves on
    return r


def refused(lim: Clocked, key: str, t: int, content: bytes | None = None) -> tuple[int, str]:
    """At ``t`` the request is refused: (retry-after, message)."""
    lim.at(t)
    r = post(lim.gw, key, content or body())
    assert r.status_code == 429, f"expected 429 at T0+{t - T0}: {r.status_code} {r.text}"
    err = r.json()["error"]
    assert err["type"] == "rate_limit_error"
    return int(r.headers["retry-after"]), err["message"]


def admitted(lim: Clocked, fake: FakeUpstream, key: str, t: int, content: bytes | None = None,
             input: int = 10, output: int = 10) -> httpx.Response:
    lim.at(t)
    fake.queue(answer(input, output))
    r = post(lim.gw, key, content or body())
    assert r.status_code == 200, f"expected 200 at T0+{t - T0}: {r.status_code} {r.text}"
    lim.gw.wait_settled([r.headers["request-id"]])
    return r


# ---------------------------------------------------------------- USD caps


def test_5h_usd_cap_refuses_at_the_cap_and_reopens_when_the_oldest_spend_ages_out(lim: Clocked,
                                                                                    fake: FakeUpstream) -> None:
    spent = cost_nano("claude-haiku-4-5", 100, 4000)  # 0.0201 USD each
    full = hold_nano("claude-haiku-4-5", body(), 4000)
    smallest = hold_nano("claude-haiku-4-5", body(), 1024)
    cap = 2 * spent + smallest - 1  # after two spends, not even a 1,024-token answer fits
    a = lim.gw.account(usd="10", limits=[f"5h:usd={usd_text(cap)}"])
    spend(lim, fake, a["key"], T0, 100, 4000)
    spend(lim, fake, a["key"], T0 + HOUR, 100, 4000)
    now = T0 + 2 * HOUR
    retry, message = refused(lim, a["key"], now)
    assert "5h" in message and "USD" in message
    # The full request fits once the spend at T0 has aged out of the 5-hour window.
    assert cap - spent >= full
    assert retry == T0 + 5 * HOUR - now
    refused(lim, a["key"], now + retry - 1)
    admitted(lim, fake, a["key"], now + retry)
    assert len(fake.requests_to("/v1/messages")) == 3


def test_near_a_usd_cap_max_tokens_is_lowered_to_the_headroom(lim: Clocked, fake: FakeUpstream) -> None:
    spent = cost_nano("claude-haiku-4-5", 100, 4000)
    headroom = hold_nano("claude-haiku-4-5", body(), 2500) + 7
    a = lim.gw.account(usd="10", limits=[f"5h:usd={usd_text(spent + headroom)}"])
    spend(lim, fake, a["key"], T0, 100, 4000)
    r = admitted(lim, fake, a["key"], T0 + 60)
    lowered = affordable("claude-haiku-4-5", body(), headroom)
    assert lowered == 2500  # the 7 nano-USD over a 2,500-token hold do not buy a 5,000 nano-USD token
    assert r.headers["bytespike-max-tokens-lowered"] == str(lowered)
    assert fake.received[-1].json()["max_tokens"] == lowered


def test_usd_cap_boundary_is_exact_to_the_nano_usd(lim: Clocked, fake: FakeUpstream) -> None:
    """With exactly a 1,024-token hold left the request goes up lowered to 1,024; one nano-USD less: 429."""
    smallest = hold_nano("claude-haiku-4-5", body(), 1024)
    ok = lim.gw.account(usd="10", limits=[f"5h:usd={usd_text(smallest)}"])
    r = admitted(lim, fake, ok["key"], T0)
    assert r.headers["bytespike-max-tokens-lowered"] == "1024"
    assert fake.received[-1].json()["max_tokens"] == 1024
    short = lim.gw.account(usd="10", limits=[f"5h:usd={usd_text(smallest - 1)}"])
    refused(lim, short["key"], T0)


def test_wallet_too_low_for_a_useful_answer_is_402_and_exactly_enough_is_lowered(lim: Clocked,
                                                                               fake: FakeUpstream) -> None:
    smallest = hold_nano("claude-haiku-4-5", body(), 1024)
    poor = lim.gw.account(usd=usd_text(smallest - 1))
    lim.at(T0)
    r = post(lim.gw, poor["key"], body())
    assert r.status_code == 402 and r.json()["error"]["type"] == "billing_error"
    assert r.headers["x-should-retry"] == "false"
    assert not fake.received
    enough = lim.gw.account(usd=usd_text(smallest))
    r = admitted(lim, fake, enough["key"], T0)
    assert r.headers["bytespike-max-tokens-lowered"] == "1024"


def test_a_user_with_3_usd_left_keeps_working_with_a_64000_token_opus_request(lim: Clocked,
                                                                             fake: FakeUpstream) -> None:
    """SPEC 4: a big Claude Code request (large context, max_tokens 64,000, thinking) goes up lowered."""
    a = lim.gw.account(usd="3")
    big = json.dumps({"model": "claude-opus-4-8", "max_tokens": 64000,
                      "thinking": {"type": "enabled", "budget_tokens": 60000},
                      "messages": [{"role": "user", "content": "x" * 600_000}]}).encode()
    assert hold_nano("claude-opus-4-8", big, 64000) > 3 * NANO
    lowered = affordable("claude-opus-4-8", big, 3 * NANO)
    assert 1024 <= lowered < 64000
    lim.at(T0)
    fake.queue(answer(150_000, lowered, model="claude-opus-4-8"))
    r = post(lim.gw, a["key"], big)
    assert r.status_code == 200, r.text
    assert r.headers["bytespike-max-tokens-lowered"] == str(lowered)
    sent = fake.received[-1].json()
    assert sent["max_tokens"] == lowered
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": lowered - 1024}
    assert sent["messages"][0]["content"] == "x" * 600_000
    rid = r.headers["request-id"]
    lim.gw.wait_settled([rid])
    charged = cost_nano("claude-opus-4-8", 150_000, lowered)
    assert lim.gw.query("SELECT amount, balance_after FROM ledger WHERE request_id = ?", rid) == [
        (-charged, 3 * NANO - charged)]


# ---------------------------------------------------------------- request and token caps, windows apart


def test_5h_1d_and_7d_windows_count_independently(lim: Clocked, fake: FakeUpstream) -> None:
    a = lim.gw.account(limits=["5h:requests=2", "1d:requests=3", "7d:requests=4"])
    admitted(lim, fake, a["key"], T0)
    admitted(lim, fake, a["key"], T0)
    retry, message = refused(lim, a["key"], T0 + 10)
    assert "5h" in message and retry == 5 * HOUR - 10
    refused(lim, a["key"], T0 + 10 + retry - 1)
    admitted(lim, fake, a["key"], T0 + 10 + retry)  # third in the day: the 5h window had room again
    now = T0 + 5 * HOUR + 1
    retry, message = refused(lim, a["key"], now)  # the 5h window has room, the day does not
    assert "1d" in message and retry == T0 + DAY - now
    refused(lim, a["key"], now + retry - 1)
    admitted(lim, fake, a["key"], now + retry)  # the fourth in the week
    now = T0 + DAY + 60
    retry, message = refused(lim, a["key"], now)  # 5h and 1d have room, the week does not
    assert "7d" in message and retry == T0 + 7 * DAY - now
    refused(lim, a["key"], now + retry - 1)
    admitted(lim, fake, a["key"], now + retry)


def test_token_cap_refuses_once_reached_and_retry_after_is_exact(lim: Clocked, fake: FakeUpstream) -> None:
    a = lim.gw.account(limits=["5h:tokens=5000"])
    spend(lim, fake, a["key"], T0, 2000, 1000)
    spend(lim, fake, a["key"], T0 + 60, 2000, 500)  # 5,500 tokens: over the cap by the running request
    now = T0 + 120
    retry, message = refused(lim, a["key"], now)
    assert "token" in message
    assert retry == T0 + 5 * HOUR - now  # the first 3,000 tokens age out, leaving 2,500
    refused(lim, a["key"], now + retry - 1)
    admitted(lim, fake, a["key"], now + retry)


def test_request_cap_counts_requests_in_flight(lim: Clocked, fake: FakeUpstream) -> None:
    a = lim.gw.account(limits=["5h:requests=1"])
    lim.at(T0)
    fake.queue(answer(10, 10, delay_before=1.5))

    async def go() -> tuple[int, int]:
        async with httpx.AsyncClient(base_url=lim.gw.url, timeout=30,
                                     headers={**V, "x-api-key": a["key"], "content-type": "application/json"}) as h:
            first = asyncio.create_task(h.post("/v1/messages", content=body()))
            await asyncio.sleep(0.5)
            second = await h.post("/v1/messages", content=body())
            return (await first).status_code, second.status_code

    assert asyncio.run(go()) == (200, 429)


def test_failed_requests_count_against_request_caps_but_not_spend(lim: Clocked, fake: FakeUpstream) -> None:
    a = lim.gw.account(limits=["5h:requests=2"])
    lim.at(T0)
    fake.queue(json_answer({"type": "error", "error": {"type": "api_error", "message": "boom"}}, status=500))
    assert post(lim.gw, a["key"], body()).status_code == 500
    (w5h,) = [w for w in httpx.get(lim.gw.url + "/v1/usage", headers={"x-api-key": a["key"]}).json()["windows"]
              if w["window"] == "5h"]
    assert (w5h["requests"], w5h["spend_usd"], w5h["tokens"]) == (1, "0", 0)
    admitted(lim, fake, a["key"], T0 + 1)
    refused(lim, a["key"], T0 + 2)


# ---------------------------------------------------------------- concurrency


def test_concurrency_cap_refuses_the_request_over_it_and_admits_the_next_when_one_ends(lim: Clocked,
                                                                                      fake: FakeUpstream) -> None:
    a = lim.gw.account(max_concurrency=1)
    lim.at(T0)
    fake.queue(answer(10, 10, delay_before=2))

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=lim.gw.url, timeout=30,
                                     headers={**V, "x-api-key": a["key"], "content-type": "application/json"}) as h:
            slow = asyncio.create_task(h.post("/v1/messages", content=body()))
            await asyncio.sleep(0.7)
            over = await h.post("/v1/messages", content=body())
            done = await slow
            fake.queue(answer(10, 10))
            after = await h.post("/v1/messages", content=body())
            return [done, over, after]

    done, over, after = asyncio.run(go())
    assert done.status_code == 200
    assert over.status_code == 429 and over.json()["error"]["type"] == "rate_limit_error"
    assert "concurrent" in over.json()["error"]["message"] and over.headers["retry-after"] == "1"
    assert after.status_code == 200


def test_concurrency_slot_is_freed_by_a_stream_the_client_abandons(lim: Clocked, fake: FakeUpstream) -> None:
    a = lim.gw.account(max_concurrency=1)
    lim.at(T0)
    frames = ['event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message",'
              '"role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,'
              '"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'] + [
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"abcd"}}\n\n'] * 30
    fake.queue(Answer(chunks=[f.encode() for f in frames], content_type="text/event-stream", delay_between=0.2))
    c = anthropic.Anthropic(base_url=lim.gw.url, api_key=a["key"], max_retries=0)
    with httpx.stream("POST", lim.gw.url + "/v1/messages", content=body(stream=True), timeout=30,
                      headers={**V, "x-api-key": a["key"], "content-type": "application/json"}) as r:
        next(r.iter_raw())
        with pytest.raises(anthropic.RateLimitError):
            c.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "x"}])
    deadline = time.time() + 5
    while True:  # the gateway frees the slot when it notices the client left (at the next upstream chunk)
        fake.queue(answer(10, 10))
        try:
            c.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "x"}])
            break
        except anthropic.RateLimitError:
            assert time.time() < deadline, "the abandoned stream kept its concurrency slot"
            time.sleep(0.1)


# ---------------------------------------------------------------- headroom headers and GET /v1/usage


def test_responses_carry_the_headroom_of_capped_windows(lim: Clocked, fake: FakeUpstream) -> None:
    a = lim.gw.account(limits=["5h:usd=10,requests=100,tokens=100000", "1d:requests=1000"])
    first = spend(lim, fake, a["key"], T0 - 30, 3000, 700)
    assert first.headers["bytespike-ratelimit-5h-requests-remaining"] == "99"  # itself in flight
    spent = cost_nano("claude-haiku-4-5", 3000, 700)
    lim.at(T0)
    fake.queue(answer(10, 10))
    c = anthropic.Anthropic(base_url=lim.gw.url, api_key=a["key"], max_retries=0)
    raw = c.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=4000,
                                              messages=[{"role": "user", "content": "hi"}])
    h = raw.headers
    sent = fake.received[-1].body  # the native route sends the client's bytes up unchanged
    held = hold_nano("claude-haiku-4-5", sent, 4000)
    assert h["bytespike-ratelimit-5h-usd-limit"] == "10"
    assert h["bytespike-ratelimit-5h-usd-remaining"] == usd_text(10 * NANO - spent - held)
    assert h["bytespike-ratelimit-5h-requests-remaining"] == "98"
    assert h["bytespike-ratelimit-5h-tokens-remaining"] == str(100000 - 3700)
    assert h["bytespike-ratelimit-5h-reset"] == rfc3339(T0 - 30 + 5 * HOUR)
    assert h["bytespike-ratelimit-1d-requests-remaining"] == "998"
    assert h["bytespike-ratelimit-1d-reset"] == rfc3339(T0 - 30 + DAY)
    assert "bytespike-ratelimit-7d-reset" not in h  # an uncapped window shows nothing
    assert (h["anthropic-ratelimit-requests-limit"], h["anthropic-ratelimit-requests-remaining"],
            h["anthropic-ratelimit-requests-reset"]) == ("100", "98", rfc3339(T0 - 30 + 5 * HOUR))
    assert (h["anthropic-ratelimit-tokens-limit"], h["anthropic-ratelimit-tokens-remaining"]) == ("100000", "96300")
    # A refusal carries them too.
    b = lim.gw.account(limits=["5h:requests=1"])
    admitted(lim, fake, b["key"], T0)
    lim.at(T0 + 1)
    r = post(lim.gw, b["key"], body())
    assert r.status_code == 429
    assert r.headers["bytespike-ratelimit-5h-requests-remaining"] == "0"
    assert r.headers["anthropic-ratelimit-requests-reset"] == rfc3339(T0 + 5 * HOUR)


def test_usage_endpoint_reports_spend_caps_resets_and_wallet_for_the_calling_key(lim: Clocked,
                                                                                 fake: FakeUpstream) -> None:
    a = lim.gw.account(usd="7", limits=["5h:usd=2,requests=50", "7d:tokens=90000"], max_concurrency=3)
    other = lim.gw.account(usd="9")
    spend(lim, fake, a["key"], T0 - 6 * HOUR, 4000, 100)  # outside 5h, inside 1d and 7d
    spend(lim, fake, a["key"], T0 - HOUR, 1000, 200)
    spend(lim, fake, other["key"], T0, 5, 5)
    c1 = cost_nano("claude-haiku-4-5", 1000, 200)
    c2 = cost_nano("claude-haiku-4-5", 4000, 100)
    lim.gw.wait_settled(account_id=a["account_id"], count=2)
    lim.at(T0)
    r = httpx.get(lim.gw.url + "/v1/usage", headers={**V, "x-api-key": a["key"]})
    assert r.status_code == 200, r.text
    u = r.json()
    assert u["key_id"] == a["key_id"] and u["max_concurrency"] == 3
    w = {x["window"]: x for x in u["windows"]}
    assert list(w) == ["5h", "1d", "7d"]
    assert (w["5h"]["spend_usd"], w["5h"]["usd_cap"], w["5h"]["usd_remaining"]) == (
        usd_text(c1), "2", usd_text(2 * NANO - c1))
    assert (w["5h"]["requests"], w["5h"]["requests_cap"], w["5h"]["requests_remaining"]) == (1, 50, 49)
    assert w["5h"]["resets_at"] == rfc3339(T0 - HOUR + 5 * HOUR)
    assert (w["1d"]["spend_usd"], w["1d"]["requests"], w["1d"]["usd_cap"]) == (usd_text(c1 + c2), 2, None)
    assert w["1d"]["resets_at"] == rfc3339(T0 - 6 * HOUR + DAY)
    assert (w["7d"]["tokens"], w["7d"]["tokens_cap"], w["7d"]["tokens_remaining"]) == (5300, 90000, 84700)
    assert u["wallet"]["balance_usd"] == usd_text(7 * NANO - c1 - c2)
    assert u["wallet"]["held_usd"] == "0"
    # The numbers survive a restart: the windows are rebuilt from the usage records.
    lim.gw.stop()
    lim.gw.start()
    again = httpx.get(lim.gw.url + "/v1/usage", headers={"x-api-key": a["key"]}).json()
    assert again["windows"] == u["windows"]
    assert calendar.timegm(time.strptime(w["5h"]["resets_at"], "%Y-%m-%dT%H:%M:%SZ")) == T0 + 4 * HOUR


def test_usage_endpoint_needs_a_key(lim: Clocked) -> None:
    r = httpx.get(lim.gw.url + "/v1/usage", headers=V)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
