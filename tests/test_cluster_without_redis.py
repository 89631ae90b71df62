"""Three instances on PostgreSQL alone (no Redis): limits are decided in the database inside each
hold's transaction, and a revoked key is refused everywhere within a second (keys cached 0.5 s)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fakeupstream import FakeUpstream, json_answer
from support.cluster import (
    PgGateway,
    anthropic_answer,
    cluster_config,
    message,
    post,
    post_all,
    start_cluster,
)
from support.services import Postgres


@pytest.fixture(scope="module")
def trio(fake: FakeUpstream, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PgGateway]]:
    cfg = cluster_config(fake.url, postgres.database(), None)
    gws = start_cluster(tmp_path_factory.mktemp("trio"), cfg, 3, {})
    yield gws
    for gw in gws:
        gw.stop()


def test_a_request_window_and_a_concurrency_cap_hold_across_instances_without_redis(
        trio: list[PgGateway], fake: FakeUpstream) -> None:
    fake.reset()
    base = fake.in_flight  # requests another test left open at the fake
    fake.handler = lambda got: json_answer(anthropic_answer(10, 5), delay_before=0.3)
    acct = trio[0].account(limits=["1m:requests=10"], max_concurrency=4)
    # Twelve at once: four in flight at most; then single requests up to the window's ten.
    codes = [r.status_code for r in post_all([trio[i % 3].url for i in range(12)], acct["key"], message())]
    served = codes.count(200)
    assert 4 <= served <= 10 and set(codes) <= {200, 429}, codes
    assert fake.max_in_flight - base == 4
    for i in range(10 - served):
        assert post(trio[i % 3].url, acct["key"], message()).status_code == 200
    refused = post(trio[2].url, acct["key"], message())
    assert refused.status_code == 429 and 50 <= int(refused.headers["retry-after"]) <= 61


def test_a_key_revoked_is_refused_by_every_instance_within_a_second_without_redis(
        trio: list[PgGateway], fake: FakeUpstream) -> None:
    fake.handler = lambda got: json_answer(anthropic_answer(10, 5))
    acct = trio[0].account()
    for gw in trio:
        assert post(gw.url, acct["key"], message()).status_code == 200
    trio[1].cli("keys", "revoke", acct["key_id"])
    revoked = time.monotonic()
    pending = set(range(3))
    while pending and time.monotonic() - revoked < 1.0:
        for i in list(pending):
            if post(trio[i].url, acct["key"], message()).status_code == 401:
                pending.discard(i)
        time.sleep(0.02)
    assert not pending, f"instances {pending} still served a revoked key after 1 s"
