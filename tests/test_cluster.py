"""Three gateway instances on one PostgreSQL and one Redis: money and limits exact across all of them.

Real processes: a throwaway PostgreSQL cluster and redis-server (``support/services.py``), three
``bytespike serve`` processes behind no balancer (the test spreads requests itself), and the fake
upstream. Holds live seconds, not an hour, so a killed instance's holds expire within a test.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bytespike.billing import money
from fakeupstream import FakeUpstream, json_answer, sse_answer
from support.cluster import (
    PgGateway,
    anthropic_answer,
    cluster_config,
    message,
    post,
    post_all,
    start_cluster,
)
from support.services import Postgres, Redis

HOLD_SECONDS = 12  # above the longest a request here waits for its settlement under load
EXACT = money.Price.from_config({"input": 1, "output": 5, "cache_write": 1, "cache_write_1h": 1, "cache_read": 1})


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("clock") / "clock"
    p.write_text("")
    return p


@pytest.fixture(scope="module")
def cluster(fake: FakeUpstream, postgres: Postgres, redis_server: Redis, clock_file: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PgGateway]]:
    cfg = cluster_config(fake.url, postgres.database(), redis_server.url)
    env = {"BYTESPIKE_HOLD_SECONDS": str(HOLD_SECONDS), "BYTESPIKE_CLOCK_FILE": str(clock_file)}
    gws = start_cluster(tmp_path_factory.mktemp("cluster"), cfg, 3, env)
    yield gws
    for gw in gws:
        gw.stop()


@pytest.fixture(autouse=True)
def _real_time(clock_file: Path) -> Iterator[None]:
    yield
    clock_file.write_text("")


def spread(gws: list[PgGateway], n: int) -> list[str]:
    return [gws[i % len(gws)].url for i in range(n)]


def exact_answers(fake: FakeUpstream, body: bytes, max_tokens: int, delay: float = 0.0) -> int:
    """Make every answer cost exactly its hold; returns that amount."""
    input_tokens = money.estimate_input_tokens(len(body))
    hold = money.hold_amount(input_tokens, max_tokens, EXACT, 1)
    assert money.cost(money.Usage(input_tokens=input_tokens, output_tokens=max_tokens), EXACT, 1) == hold
    fake.handler = lambda got: json_answer(anthropic_answer(input_tokens, max_tokens), delay_before=delay)
    return hold


@pytest.mark.xfail(reason="open defect after the last merges: some of the 300 requests end with a status other "
                          "than 200 or 402 across three instances; under investigation", strict=False)
def test_three_instances_serve_exactly_what_the_wallet_allows_and_the_ledger_matches_usage(
        cluster: list[PgGateway], fake: FakeUpstream) -> None:
    body = message(max_tokens=20)
    hold = exact_answers(fake, body, 20, delay=0.05)
    n = 50
    acct = cluster[0].account(usd=money.format_usd(n * hold), group="multi-vendor")
    rs = post_all(spread(cluster, 300), acct["key"], body)
    codes = [r.status_code for r in rs]
    assert codes.count(200) == n, sorted(set(codes))
    assert codes.count(402) == 300 - n
    assert all(r.json()["error"]["type"] == "billing_error" for r in rs if r.status_code == 402)
    gw = cluster[0]
    gw.wait_settled(account_id=acct["account_id"], count=300, timeout=30)
    q = gw.query
    entries = q("SELECT amount, balance_after FROM ledger WHERE account_id = ? ORDER BY id", acct["account_id"])
    running = 0
    for amount, after in entries:
        running += amount
        assert after == running, "a ledger entry carried a stale balance forward (a lost update)"
        assert after >= 0
    assert running == 0
    charged = q("SELECT COALESCE(SUM(-amount), 0), COUNT(*) FROM ledger WHERE account_id = ? AND kind = 'charge'",
                acct["account_id"])[0]
    used = q("SELECT COALESCE(SUM(cost), 0), COUNT(*) FROM usage_records WHERE account_id = ? AND cost > 0",
             acct["account_id"])[0]
    assert charged == used == (n * hold, n)
    assert q("SELECT COUNT(*) FROM holds WHERE account_id = ?", acct["account_id"])[0][0] == 0
    wallet = httpx.get(cluster[2].url + "/v1/usage", headers={"x-api-key": acct["key"]}).json()["wallet"]
    assert wallet["balance_usd"] == "0"


def test_a_request_window_counts_requests_through_every_instance(
        cluster: list[PgGateway], fake: FakeUpstream, clock_file: Path) -> None:
    body = message()
    exact_answers(fake, body, 20)
    acct = cluster[0].account(limits=["1m:requests=10"])
    first = time.time()
    for i in range(10):
        r = post(cluster[i % 3].url, acct["key"], body)
        assert r.status_code == 200, r.text
    refused = post(cluster[1].url, acct["key"], body)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    retry = int(refused.headers["retry-after"])
    # The first of the ten ages out 60 s after it was counted (a little after ``first``).
    assert 60 - (time.time() - first) - 1 <= retry <= 61
    for gw in cluster:
        assert post(gw.url, acct["key"], body).status_code == 429
    clock_file.write_text(str(retry))  # every instance's clock moves on by retry-after
    assert post(cluster[2].url, acct["key"], body).status_code == 200


def test_a_concurrency_cap_of_two_never_has_three_in_flight_across_instances(
        cluster: list[PgGateway], fake: FakeUpstream) -> None:
    body = message()
    exact_answers(fake, body, 20, delay=0.6)
    acct = cluster[0].account(max_concurrency=2)
    fake.reset()
    base = fake.in_flight  # requests another test left open at the fake
    exact_answers(fake, body, 20, delay=0.6)
    rs = post_all(spread(cluster, 12), acct["key"], body)
    codes = [r.status_code for r in rs]
    assert codes.count(200) >= 2 and set(codes) <= {200, 429}, codes
    assert fake.max_in_flight - base == 2
    assert all("concurrent" in r.json()["error"]["message"] for r in rs if r.status_code == 429)


def test_a_key_revoked_through_one_instance_is_refused_by_all_three_within_a_second(
        cluster: list[PgGateway], fake: FakeUpstream) -> None:
    body = message()
    exact_answers(fake, body, 20)
    acct = cluster[0].account()
    for gw in cluster:  # every instance has the key cached
        assert post(gw.url, acct["key"], body).status_code == 200
    cluster[0].cli("keys", "revoke", acct["key_id"])
    revoked = time.monotonic()
    pending = set(range(3))
    while pending and time.monotonic() - revoked < 1.0:
        for i in list(pending):
            if post(cluster[i].url, acct["key"], body).status_code == 401:
                pending.discard(i)
        time.sleep(0.02)
    assert not pending, f"instances {pending} still served a revoked key after 1 s"


def test_redis_down_refuses_limited_work_with_503_and_limits_resume_exactly_when_it_returns(
        cluster: list[PgGateway], fake: FakeUpstream, redis_server: Redis) -> None:
    body = message()
    exact_answers(fake, body, 20)
    acct = cluster[0].account(limits=["1m:requests=5"])
    for gw in cluster[:2]:
        assert post(gw.url, acct["key"], body).status_code == 200
    redis_server.stop()
    try:
        deadline = time.time() + 5
        codes: list[int] = []
        while time.time() < deadline:
            codes = [post(gw.url, acct["key"], body).status_code for gw in cluster]
            if codes == [503, 503, 503]:
                break
            time.sleep(0.1)
        assert codes == [503, 503, 503], codes
        r = post(cluster[0].url, acct["key"], body)
        assert r.json()["error"]["type"] == "overloaded_error" and "limits cannot be checked" in r.text
    finally:
        redis_server.start()  # empty: every key is rebuilt from PostgreSQL
    deadline = time.time() + 10
    while post(cluster[2].url, acct["key"], body).status_code != 200:
        assert time.time() < deadline, "the gateway did not recover when Redis came back"
        time.sleep(0.2)
    served = 3  # two before the outage, one just now
    codes = [post(cluster[i % 3].url, acct["key"], body).status_code for i in range(4)]
    assert codes == [200] * (5 - served) + [429] * (4 - (5 - served)), codes


def test_an_instance_killed_mid_stream_leaves_its_hold_to_expire_and_nothing_is_charged_twice(
        cluster: list[PgGateway], fake: FakeUpstream) -> None:
    acct = cluster[0].account(max_concurrency=1)
    frames = ['event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message",'
              '"role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,'
              '"usage":{"input_tokens":10,"output_tokens":1}}}\n\n',
              'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
              '"content_block":{"type":"text","text":""}}\n\n',
              'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              '"delta":{"type":"text_delta","text":"partial"}}\n\n']
    # A slow stream (one chunk every half second, about a minute long): the kill lands in the middle.
    fake.queue(sse_answer("".join(frames) + frames[2] * 120, chunk_size=80, delay_between=0.5))
    victim = cluster[2]
    got: dict[str, Any] = {}

    def stream() -> None:
        try:
            with httpx.stream("POST", victim.url + "/v1/messages", content=message(stream=True), timeout=30,
                              headers={"anthropic-version": "2023-06-01", "x-api-key": acct["key"],
                                       "content-type": "application/json"}) as r:
                got["id"] = r.headers["request-id"]
                for _ in r.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.time() + 10
    while "id" not in got:
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    victim.stop(signal.SIGKILL)
    t.join(10)
    try:
        body = message()
        exact_answers(fake, body, 20)
        # Its slot and hold stay until the hold expires (the crashed instance cannot say it ended).
        assert post(cluster[0].url, acct["key"], body).status_code == 429
        deadline = time.time() + HOLD_SECONDS + 5
        while post(cluster[1].url, acct["key"], body).status_code != 200:
            assert time.time() < deadline, "the killed instance's slot never came free"
            time.sleep(0.25)
        q = cluster[0].query
        deadline = time.time() + 5
        while q("SELECT COUNT(*) FROM holds WHERE id = ?", got["id"])[0][0]:
            assert time.time() < deadline, "the killed instance's hold was never released"
            time.sleep(0.2)
        assert q("SELECT COUNT(*) FROM ledger WHERE request_id = ?", got["id"])[0][0] == 0
        assert q("SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM ledger WHERE request_id IS NOT NULL")[0][0] == 0
        assert q("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account_id = ?", acct["account_id"])[0][0] == \
            q("SELECT balance_after FROM ledger WHERE account_id = ? ORDER BY id DESC LIMIT 1", acct["account_id"])[0][0]
    finally:
        victim.start(migrate=False)
