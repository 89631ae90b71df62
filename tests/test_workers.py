"""``serve --workers 2`` on SQLite without Redis: both workers start on an empty database and one
window cap holds across them (decided in the database, inside each hold's transaction)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import Gateway
from conftest import test_config as gateway_config
from fakeupstream import FakeUpstream, json_answer
from support.cluster import EXACT_MODEL, anthropic_answer, message, post, post_all


@pytest.fixture(scope="module")
def workers(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("workers")
    gw = Gateway(d, gateway_config(fake.url, d / "bytespike.db", extra_models=EXACT_MODEL))
    gw.start("--workers", "2", migrate=False)  # an empty database: both workers migrate at once
    yield gw
    gw.stop()


def test_two_workers_start_together_on_an_empty_sqlite_database(workers: Gateway) -> None:
    assert workers.proc is not None and workers.proc.poll() is None
    assert workers.query("SELECT version_num FROM alembic_version") == [("0006_holds_by_key",)]
    assert "already exists" not in workers.log.read_text()


def test_a_request_window_holds_across_two_workers(workers: Gateway, fake: FakeUpstream) -> None:
    fake.handler = lambda got: json_answer(anthropic_answer(10, 5), delay_before=0.2)
    acct = workers.account(limits=["1m:requests=10"])
    body = message()
    codes = [r.status_code for r in post_all([workers.url] * 20, acct["key"], body)]
    assert codes.count(200) == 10 and codes.count(429) == 10, codes
    refused = post(workers.url, acct["key"], body)
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 61
    workers.wait_settled(account_id=acct["account_id"], count=21)
    assert workers.query("SELECT COUNT(*) FROM usage_records WHERE key_id = ? AND status = 'succeeded'",
                         acct["key_id"]) == [(10,)]


def test_a_concurrency_cap_holds_across_two_workers(workers: Gateway, fake: FakeUpstream) -> None:
    fake.reset()
    base = fake.in_flight  # requests another test left open at the fake
    fake.handler = lambda got: json_answer(anthropic_answer(10, 5), delay_before=0.5)
    acct = workers.account(max_concurrency=2)
    codes = [r.status_code for r in post_all([workers.url] * 10, acct["key"], message())]
    assert codes.count(200) >= 2 and set(codes) <= {200, 429}, codes
    assert fake.max_in_flight - base == 2
