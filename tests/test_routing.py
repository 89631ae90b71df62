"""Routing across deployments: failover before the first byte (never after), retry-after,
circuit breakers with cooldown and half-open probes, and prompt-cache affinity."""

from __future__ import annotations

import concurrent.futures
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from bytespike.config import BreakerConfig, DeploymentConfig, ModelConfig, parse
from bytespike.errors import GatewayError
from bytespike.gateway.routing import BreakerState, Router, affinity_key
from conftest import Gateway, free_port
from conftest import test_config as gateway_config
from deployments import (
    charges,
    dep,
    hello,
    message_answer,
    model,
    overloaded,
    post,
    provider,
    record,
    sse_events,
    stream_answer,
    to,
)
from fakeupstream import Answer, FakeUpstream, Received

COOLDOWN = 1.0


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("routing")
    providers = {
        "primary": provider(f"{fake.url}/primary", "primary", breaker={"failures": 3, "cooldown": COOLDOWN}),
        "secondary": provider(f"{fake.url}/secondary", "secondary"),
        "backup": provider(f"{fake.url}/backup", "backup", breaker={"failures": 3, "cooldown": 5}),
        "closed": provider(f"http://127.0.0.1:{free_port()}", "closed"),
    }
    models = {
        "duo-529": model(dep("primary", "up-529"), dep("secondary", "up-529", 1)),
        "duo-refused": model(dep("closed", "up-refused"), dep("secondary", "up-refused", 1)),
        "duo-429": model(dep("primary", "up-429"), dep("secondary", "up-429", 1)),
        "duo-cut": model(dep("primary", "up-cut"), dep("secondary", "up-cut", 1)),
        "duo-breaker": model(dep("primary", "up-breaker"), dep("secondary", "up-breaker", 1)),
        "duo-reopen": model(dep("primary", "up-reopen"), dep("secondary", "up-reopen", 1)),
        "duo-probe": model(dep("primary", "up-probe"), dep("secondary", "up-probe", 1)),
        "duo-cutter": model(dep("primary", "up-cutter"), dep("secondary", "up-cutter", 1)),
        "both-down": model(dep("backup", "up-both"), dep("primary", "up-both", 1)),
        "pair": model(dep("primary", "up-pair"), dep("secondary", "up-pair")),
        "pair-sticky": model(dep("primary", "up-sticky"), dep("secondary", "up-sticky")),
    }
    gateway = Gateway(d, gateway_config(fake.url, d / "bytespike.db", extra_providers=providers, extra_models=models))
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture()
def key(gw: Gateway) -> str:
    return gw.account()["key"]


def fail_when(fake: FakeUpstream, provider_name: str, upstream_model: str, answer: Any) -> None:
    """Script ``provider_name`` to give ``answer()`` for ``upstream_model``; everything else succeeds."""

    def handler(r: Received) -> Answer | None:
        if f"/{provider_name}/" in r.path and r.json().get("model") == upstream_model:
            return answer()
        return None

    fake.handler = handler


def served_by(gw: Gateway, r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    rid = r.headers["request-id"]
    gw.wait_settled([rid])
    return record(gw, rid)["provider"]


# ---------------------------------------------------------------- failover


@pytest.mark.parametrize("stream", [False, True])
def test_529_on_the_first_deployment_is_served_by_the_second_and_billed_once(gw: Gateway, fake: FakeUpstream,
                                                                             key: str, stream: bool):
    fail_when(fake, "primary", "up-529", overloaded)
    ids = []
    for _ in range(4):
        r = post(gw, key, hello("duo-529", stream=stream))
        assert r.status_code == 200, r.text
        if stream:
            assert sse_events(r.text)[-1][0] == "message_stop"
        ids.append(r.headers["request-id"])
    gw.wait_settled(ids)
    for rid in ids:
        rec = record(gw, rid)
        assert rec["provider"] == "secondary" and rec["status"] == "succeeded" and rec["cost"] > 0
        assert charges(gw, rid) == 1
    assert to(fake.received, "/secondary/") == 4


def test_refused_connection_is_served_by_the_second_and_billed_once(gw: Gateway, fake: FakeUpstream, key: str):
    ids = []
    for stream in (False, True, False):
        r = post(gw, key, hello("duo-refused", stream=stream))
        assert r.status_code == 200, r.text
        ids.append(r.headers["request-id"])
    gw.wait_settled(ids)
    for rid in ids:
        assert record(gw, rid)["provider"] == "secondary"
        assert charges(gw, rid) == 1
    assert gw.query("SELECT COUNT(*) FROM usage_records WHERE request_id IN (?, ?, ?)", *ids)[0][0] == 3


def test_retry_after_on_429_skips_that_deployment_until_then(gw: Gateway, fake: FakeUpstream, key: str):
    fail_when(fake, "primary", "up-429", lambda: Answer(status=429, headers={"retry-after": "2"},
                                                         body=b'{"type":"error","error":{"type":"rate_limit_error"}}'))
    assert served_by(gw, post(gw, key, hello("duo-429"))) == "secondary"
    assert to(fake.received, "/primary/") == 1
    fake.handler = None  # the primary has recovered, but asked us to wait 2 s
    assert served_by(gw, post(gw, key, hello("duo-429"))) == "secondary"
    assert to(fake.received, "/primary/") == 1
    time.sleep(2.2)
    assert served_by(gw, post(gw, key, hello("duo-429"))) == "primary"


def test_failure_after_the_first_byte_is_not_retried_and_not_billed(gw: Gateway, fake: FakeUpstream, key: str):
    fail_when(fake, "primary", "up-cut", lambda: stream_answer(["Hel", "lo ", "wor", "ld"], cut_after=4))
    r = post(gw, key, hello("duo-cut", stream=True))
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [e for e, _ in events]
    assert to(fake.received, "/secondary/") == 0
    rid = r.headers["request-id"]
    gw.wait_settled([rid])
    rec = record(gw, rid)
    assert rec["provider"] == "primary" and rec["status"] == "failed" and rec["cost"] == 0
    assert charges(gw, rid) == 0
    assert gw.query("SELECT COUNT(*) FROM holds WHERE id = ?", rid)[0][0] == 0


# ---------------------------------------------------------------- circuit breakers


def test_breaker_skips_a_failing_deployment_then_one_probe_closes_it(gw: Gateway, fake: FakeUpstream, key: str):
    fail_when(fake, "primary", "up-breaker", overloaded)
    for _ in range(3):
        assert served_by(gw, post(gw, key, hello("duo-breaker"))) == "secondary"
    assert to(fake.received, "/primary/") == 3
    for _ in range(3):  # open: not even tried
        assert served_by(gw, post(gw, key, hello("duo-breaker"))) == "secondary"
    assert to(fake.received, "/primary/") == 3
    fake.handler = None  # recovered
    time.sleep(COOLDOWN + 0.2)
    assert served_by(gw, post(gw, key, hello("duo-breaker"))) == "primary"  # the probe
    assert to(fake.received, "/primary/") == 4
    for _ in range(2):  # closed again
        assert served_by(gw, post(gw, key, hello("duo-breaker"))) == "primary"


def test_a_failed_probe_opens_the_breaker_again(gw: Gateway, fake: FakeUpstream, key: str):
    fail_when(fake, "primary", "up-reopen", overloaded)
    for _ in range(3):
        post(gw, key, hello("duo-reopen"))
    time.sleep(COOLDOWN + 0.2)
    assert served_by(gw, post(gw, key, hello("duo-reopen"))) == "secondary"  # probe failed, then failover
    assert to(fake.received, "/primary/") == 4
    assert served_by(gw, post(gw, key, hello("duo-reopen"))) == "secondary"
    assert to(fake.received, "/primary/") == 4  # open again
    fake.handler = None
    time.sleep(COOLDOWN + 0.2)
    assert served_by(gw, post(gw, key, hello("duo-reopen"))) == "primary"


def test_half_open_breaker_lets_exactly_one_probe_through(gw: Gateway, fake: FakeUpstream, key: str):
    fail_when(fake, "primary", "up-probe", overloaded)
    for _ in range(3):
        post(gw, key, hello("duo-probe"))
    # recovered, but slow, so the probe is still out when the others come
    fail_when(fake, "primary", "up-probe", lambda: message_answer(delay_before=0.8))
    time.sleep(COOLDOWN + 0.2)
    before = to(fake.received, "/primary/")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        first = pool.submit(post, gw, key, hello("duo-probe"))
        time.sleep(0.2)
        rest = [pool.submit(post, gw, key, hello("duo-probe")) for _ in range(5)]
        results = [first.result(), *(f.result() for f in rest)]
    assert all(r.status_code == 200 for r in results)
    assert to(fake.received, "/primary/") - before == 1


def test_streams_that_break_mid_way_count_against_the_deployment(gw: Gateway, fake: FakeUpstream, key: str):
    fail_when(fake, "primary", "up-cutter", lambda: stream_answer(["a", "b"], cut_after=3))
    for _ in range(3):  # each is answered (and ends in an error event), never retried
        r = post(gw, key, hello("duo-cutter", stream=True))
        assert sse_events(r.text)[-1][0] == "error"
    assert served_by(gw, post(gw, key, hello("duo-cutter", stream=True))) == "secondary"
    assert to(fake.received, "/primary/") == 3


def test_when_every_deployment_is_open_the_first_to_cool_down_is_still_tried(gw: Gateway, fake: FakeUpstream,
                                                                               key: str):
    def handler(r: Received) -> Answer | None:
        return overloaded() if r.json().get("model") == "up-both" else None

    fake.handler = handler
    for _ in range(3):
        r = post(gw, key, hello("both-down"))
        assert r.status_code == 529
    assert to(fake.received, "/backup/") == 3 and to(fake.received, "/primary/") == 3
    r = post(gw, key, hello("both-down"))  # both open: primary (1 s cooldown) is ready before backup (5 s)
    assert r.status_code == 529
    assert r.json()["error"]["type"] == "overloaded_error"
    assert to(fake.received, "/primary/") == 4 and to(fake.received, "/backup/") == 3
    fake.handler = None
    r = post(gw, key, hello("both-down"))
    assert served_by(gw, r) == "primary"


# ---------------------------------------------------------------- affinity


def test_one_conversation_sticks_to_one_deployment_and_conversations_spread(gw: Gateway, key: str):
    for user in ("alice", "bob", "carol"):
        seen = {served_by(gw, post(gw, key, hello("pair", user=user, text=f"turn {i}"))) for i in range(6)}
        assert len(seen) == 1, (user, seen)
    spread = Counter(served_by(gw, post(gw, key, hello("pair", user=f"user-{i}"))) for i in range(16))
    assert set(spread) == {"primary", "secondary"}


def test_same_cached_prefix_without_a_user_id_sticks(gw: Gateway, key: str):
    def convo(first: str, turns: int) -> dict[str, Any]:
        msgs: list[dict[str, Any]] = [{"role": "user", "content": first}]
        for i in range(turns):
            msgs += [{"role": "assistant", "content": f"answer {i}"}, {"role": "user", "content": f"more {i}"}]
        return {"model": "pair", "max_tokens": 32, "system": "You are terse.", "messages": msgs}

    for first in ("a long shared document", "another document"):
        seen = {served_by(gw, post(gw, key, convo(first, turns))) for turns in range(5)}
        assert len(seen) == 1
    spread = {served_by(gw, post(gw, key, convo(f"doc {i}", 0))) for i in range(16)}
    assert spread == {"primary", "secondary"}


def test_openai_user_field_sticks(gw: Gateway, key: str):
    seen = set()
    for i in range(6):
        r = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                       json={"model": "pair", "user": "dave", "messages": [{"role": "user", "content": f"q{i}"}]})
        seen.add(served_by(gw, r))
    assert len(seen) == 1


def test_a_sticky_conversation_fails_over_when_its_deployment_fails_and_comes_back(gw: Gateway, fake: FakeUpstream,
                                                                                  key: str):
    home = served_by(gw, post(gw, key, hello("pair-sticky", user="erin")))
    other = "secondary" if home == "primary" else "primary"
    fail_when(fake, home, "up-sticky", overloaded)
    assert served_by(gw, post(gw, key, hello("pair-sticky", user="erin"))) == other
    fake.handler = None
    assert served_by(gw, post(gw, key, hello("pair-sticky", user="erin"))) == home


# ---------------------------------------------------------------- the router alone


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deployments(*specs: tuple[str, int, int]) -> ModelConfig:
    deps = tuple(DeploymentConfig(provider=p, model="m", priority=prio, weight=w) for p, prio, w in specs)
    return ModelConfig(id="m", aliases=(), price={}, deployments=deps)


def router(seed: int = 1) -> tuple[Router, Clock]:
    """A router whose breakers open after 2 failures for 10 s, on a clock the test moves."""
    clock = Clock()
    r = Router(rng=random.Random(seed), clock=clock)
    r._default = BreakerConfig(failures=2, cooldown=10)
    return r, clock


OVERLOADED = GatewayError("overloaded_error", "x", retryable=True)
TWO = deployments(("a", 0, 1), ("b", 1, 1))


def names(r: Router, m: ModelConfig, affinity: str | None = None) -> list[str]:
    return [d.provider for d in r.order(m, affinity)]


def test_priority_comes_first_and_weight_spreads_within_a_priority():
    r, _ = router()
    assert names(r, TWO) == ["a", "b"]
    m = deployments(("x", 0, 1), ("y", 0, 3), ("z", 5, 1))
    firsts = Counter(names(r, m)[0] for _ in range(4000))
    assert set(firsts) == {"x", "y"}
    assert 0.70 < firsts["y"] / 4000 < 0.80
    assert all(names(r, m)[-1] == "z" for _ in range(50))


def test_breaker_opens_after_n_consecutive_failures_and_a_success_resets_the_count():
    r, clock = router()
    a = TWO.deployments[0]
    r.failed(a, OVERLOADED)
    r.succeeded(a)
    r.failed(a, OVERLOADED)
    assert names(r, TWO) == ["a", "b"]
    r.failed(a, OVERLOADED)
    assert r.health(a).state(clock.now) is BreakerState.OPEN
    assert names(r, TWO) == ["b"]
    clock.now += 9.9
    assert names(r, TWO) == ["b"]


def test_half_open_lets_one_probe_and_its_success_closes_the_breaker():
    r, clock = router()
    a = TWO.deployments[0]
    r.failed(a, OVERLOADED)
    r.failed(a, OVERLOADED)
    clock.now += 10
    assert r.health(a).state(clock.now) is BreakerState.HALF_OPEN
    assert names(r, TWO) == ["a", "b"]  # the probe
    assert names(r, TWO) == ["b"]  # the probe is out: nobody else
    r.succeeded(a)
    assert r.health(a).state(clock.now) is BreakerState.CLOSED
    assert names(r, TWO) == ["a", "b"]


def test_a_failed_probe_reopens_for_another_cooldown():
    r, clock = router()
    a = TWO.deployments[0]
    r.failed(a, OVERLOADED)
    r.failed(a, OVERLOADED)
    clock.now += 10
    assert names(r, TWO)[0] == "a"
    r.failed(a, OVERLOADED)
    assert r.health(a).state(clock.now) is BreakerState.OPEN
    assert names(r, TWO) == ["b"]
    clock.now += 10
    assert names(r, TWO)[0] == "a"
    assert r.health(a).opened == 2


def test_a_probe_that_never_reports_back_does_not_disable_the_deployment_for_good():
    r, clock = router()
    a = TWO.deployments[0]
    r.failed(a, OVERLOADED)
    r.failed(a, OVERLOADED)
    clock.now += 10
    assert names(r, TWO)[0] == "a"  # a probe that is then lost
    assert names(r, TWO) == ["b"]
    clock.now += 10
    assert names(r, TWO)[0] == "a"


def test_every_deployment_waiting_still_tries_the_one_ready_first():
    r, clock = router()
    a, b = TWO.deployments
    for _ in range(2):
        r.failed(b, OVERLOADED)
    clock.now += 3
    for _ in range(2):
        r.failed(a, OVERLOADED)
    assert names(r, TWO) == ["b"]  # b opened first, so it cools down first
    single = deployments(("solo", 0, 1))
    for _ in range(5):
        r.failed(single.deployments[0], OVERLOADED)
    assert names(r, single) == ["solo"]


def test_retry_after_skips_a_deployment_until_then_without_opening_its_breaker():
    r, clock = router()
    a = TWO.deployments[0]
    r.failed(a, GatewayError("rate_limit_error", "slow down", headers={"retry-after": "7"}, retryable=True))
    assert r.health(a).state(clock.now) is BreakerState.CLOSED
    assert names(r, TWO) == ["b"]
    clock.now += 7
    assert names(r, TWO) == ["a", "b"]


def test_a_bad_request_does_not_count_against_the_deployment():
    r, clock = router()
    a = TWO.deployments[0]
    for _ in range(10):
        r.failed(a, GatewayError("invalid_request_error", "bad"))
    assert r.health(a).state(clock.now) is BreakerState.CLOSED
    assert r.health(a).errors == {"invalid_request_error": 10}


def test_affinity_order_is_fixed_per_conversation_and_weighted_across_them():
    r, _ = router()
    m = deployments(("x", 0, 1), ("y", 0, 3))
    assert len({tuple(names(r, m, "user:alice")) for _ in range(20)}) == 1
    firsts = Counter(names(r, m, f"user:{i}")[0] for i in range(4000))
    assert 0.70 < firsts["y"] / 4000 < 0.80


def test_adding_a_deployment_moves_only_the_conversations_it_takes():
    r, _ = router()
    before = {i: names(r, deployments(("x", 0, 1), ("y", 0, 1)), f"user:{i}")[0] for i in range(2000)}
    after = {i: names(r, deployments(("x", 0, 1), ("y", 0, 1), ("z", 0, 1)), f"user:{i}")[0] for i in range(2000)}
    moved = [i for i in before if before[i] != after[i]]
    assert all(after[i] == "z" for i in moved)


def test_affinity_key_from_user_id_openai_user_or_the_cached_prefix():
    assert affinity_key({"metadata": {"user_id": "u1"}, "messages": []}) == "user:u1"
    assert affinity_key({"user": "u2", "messages": []}) == "user:u2"
    turn1 = {"system": "be terse", "messages": [{"role": "user", "content": "doc"}]}
    turn3 = {"system": "be terse", "messages": [{"role": "user", "content": "doc"},
                                                 {"role": "assistant", "content": "ok"},
                                                 {"role": "user", "content": "more"}]}
    assert affinity_key(turn1) == affinity_key(turn3)
    assert affinity_key(turn1) != affinity_key({**turn1, "system": "be verbose"})
    chat = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "doc"}]}
    chat3 = {"messages": [*chat["messages"], {"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}
    assert affinity_key(chat) == affinity_key(chat3) != affinity_key({"messages": [{"role": "user", "content": "doc"}]})
    assert affinity_key({"messages": []}) is None


def test_router_state_stays_as_large_as_the_configuration():
    cfg = parse(orjson.dumps({
        "providers": {p: {"type": "anthropic", "base_url": "http://x", "api_key": "k"} for p in ("a", "b", "c")},
        "models": {"m": {"price": {"input": 1, "output": 1},
                         "deployments": [{"provider": p, "model": "m"} for p in ("a", "b", "c")]}},
    }).decode(), "t", {})
    clock = Clock()
    r = Router(cfg, clock=clock)
    m = cfg.models["m"]
    errors = [OVERLOADED, GatewayError("timeout_error", "t", retryable=True),
              GatewayError("rate_limit_error", "r", headers={"retry-after": "1"}, retryable=True)]
    for i in range(20000):
        clock.now += 0.01
        for d in r.order(m, f"user:{i}"):
            if i % 3:
                r.failed(d, errors[i % 3])
            else:
                r.succeeded(d)
            break
    snap = r.snapshot()
    assert len(snap) == 3
    assert all(len(h.errors) <= 3 for _, h, _ in snap)
