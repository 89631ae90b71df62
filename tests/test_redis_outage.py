"""``redis_policy: open``: while Redis does not answer, requests are served (their limits unchecked);
once it answers again the requests it missed are counted, and the caps hold exactly again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fakeupstream import FakeUpstream, json_answer
from support.cluster import PgGateway, anthropic_answer, cluster_config, message, post, start_cluster
from support.services import Postgres, Redis


@pytest.fixture()
def open_gateway(fake: FakeUpstream, postgres: Postgres, redis_server: Redis,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgGateway]:
    cfg = cluster_config(fake.url, postgres.database(), redis_server.url)
    cfg["redis_policy"] = "open"
    [gw] = start_cluster(tmp_path_factory.mktemp("open"), cfg, 1, {})
    yield gw
    gw.stop()


def test_with_the_open_policy_requests_are_served_while_redis_is_away_and_counted_when_it_returns(
        open_gateway: PgGateway, fake: FakeUpstream, redis_server: Redis) -> None:
    fake.handler = lambda got: json_answer(anthropic_answer(10, 5))
    acct = open_gateway.account(limits=["1m:requests=6"])
    body = message()
    assert [post(open_gateway.url, acct["key"], body).status_code for _ in range(2)] == [200, 200]
    # Redis stops answering (its data kept): the gateway times out on it and serves anyway.
    redis_server.cli("CLIENT", "PAUSE", "4000", "ALL")
    paused = time.time()
    assert [post(open_gateway.url, acct["key"], body).status_code for _ in range(2)] == [200, 200]
    assert time.time() - paused < 4, "the requests waited for Redis instead of being served"
    assert "lost Redis" in open_gateway.log.read_text()
    deadline = time.time() + 15
    while "replayed 2 settlement(s)" not in open_gateway.log.read_text():
        assert time.time() < deadline, "the missed settlements were never counted"
        time.sleep(0.2)
    codes = [post(open_gateway.url, acct["key"], body).status_code for _ in range(3)]
    assert codes == [200, 200, 429], codes
