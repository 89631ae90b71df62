"""Task webhooks: signed with the account's secret, retried after a failure, logged, and refused
for private targets unless the operator allows them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from conftest import Gateway
from fakeupstream import FakeUpstream
from tasks_support import WebhookReceiver, get, haiku, submit, task_gateway, wait_for

TOLERANCE = 300  # what a receiver accepts: signatures made in the last five minutes


def receiver_accepts(secret: str, body: bytes, header: str, now: float) -> bool:
    """A receiver's check, written from the documented scheme (not the gateway's code)."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    t = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and now - t <= TOLERANCE


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = task_gateway(fake.url, tmp_path_factory.mktemp("webhooks")).start()
    yield g
    g.stop()


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver([500]).start()
    yield r
    r.stop()


def test_a_finished_task_is_posted_signed_and_retried_after_the_receiver_answers_500(
        gw: Gateway, receiver: WebhookReceiver) -> None:
    acct = gw.account(usd="10")
    secret = json.loads(gw.cli("webhooks", "secret", acct["email"], "--json").stdout)["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    assert json.loads(gw.cli("webhooks", "secret", acct["email"], "--json").stdout)["secret"] == secret
    t = submit(gw, acct["key"], haiku(), webhook_url=receiver.url, metadata={"job": 1})
    (h1, b1, at1), (h2, b2, at2) = receiver.wait(2)
    assert at2 - at1 >= 0.9  # the retry came after a backoff
    for headers, body, at in ((h1, b1, at1), (h2, b2, at2)):
        assert headers["content-type"] == "application/json"
        assert receiver_accepts(secret, body, headers["bytespike-signature"], at)
        assert not receiver_accepts("whsec_wrong", body, headers["bytespike-signature"], at)
        task = orjson.loads(body)
        assert task["id"] == t["id"] and task["status"] == "succeeded" and task["metadata"] == {"job": 1}
        assert task["result"]["type"] == "message"
    time.sleep(1.5)
    assert len(receiver.got) == 2  # delivered: not sent again
    shown = get(gw, acct["key"], t["id"])
    assert shown["webhook_status"] == "delivered"
    assert [d["status_code"] for d in shown["webhook_deliveries"]] == [500, 200]
    cli = json.loads(gw.cli("tasks", "show", t["id"], "--json").stdout)
    assert [d["attempt"] for d in cli["webhook_deliveries"]] == [1, 2]


def test_a_replayed_delivery_older_than_five_minutes_is_detectable_by_its_timestamp(
        gw: Gateway, receiver: WebhookReceiver) -> None:
    acct = gw.account(usd="10")
    secret = json.loads(gw.cli("webhooks", "secret", acct["email"], "--json").stdout)["secret"]
    receiver.statuses.clear()
    submit(gw, acct["key"], haiku(), webhook_url=receiver.url)
    headers, body, at = receiver.wait(1)[0]
    sig = headers["bytespike-signature"]
    t = int(sig.split(",")[0].removeprefix("t="))
    assert abs(t - at) < 5
    assert receiver_accepts(secret, body, sig, at)
    assert not receiver_accepts(secret, body, sig, at + TOLERANCE + 1)  # replayed six minutes later
    forged = f"t={int(at) + TOLERANCE},{sig.split(',')[1]}"  # a fresh t does not match the signature
    assert not receiver_accepts(secret, body, forged, at + TOLERANCE)


def test_a_rotated_secret_signs_the_next_deliveries(gw: Gateway, receiver: WebhookReceiver) -> None:
    acct = gw.account(usd="10")
    old = json.loads(gw.cli("webhooks", "secret", acct["email"], "--json").stdout)["secret"]
    new = json.loads(gw.cli("webhooks", "secret", acct["email"], "--rotate", "--json").stdout)["secret"]
    assert new != old
    receiver.statuses.clear()
    submit(gw, acct["key"], haiku(), webhook_url=receiver.url)
    headers, body, at = receiver.wait(1)[0]
    assert receiver_accepts(new, body, headers["bytespike-signature"], at)
    assert not receiver_accepts(old, body, headers["bytespike-signature"], at)


def test_a_canceled_task_reports_its_cancel_by_webhook(gw: Gateway, receiver: WebhookReceiver) -> None:
    acct = gw.account(usd="0")  # stays queued
    receiver.statuses.clear()
    t = submit(gw, acct["key"], haiku(), webhook_url=receiver.url)
    httpx.post(f"{gw.url}/v1/tasks/{t['id']}/cancel", headers={"x-api-key": acct["key"]})
    _, body, _ = receiver.wait(1)[0]
    assert orjson.loads(body)["status"] == "canceled"
    assert wait_for(gw, acct["key"], t["id"])["status"] == "canceled"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9000/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/hook", "http://[fe80::1]/hook", "http://0.0.0.0/hook",
    "http://[::ffff:127.0.0.1]/hook",
])
def test_a_webhook_to_a_private_loopback_or_link_local_address_is_refused_by_default(
        fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory, strict: Gateway, url: str) -> None:
    acct = strict.account(usd="10")
    r = httpx.post(strict.url + "/v1/tasks", headers={"x-api-key": acct["key"]},
                   json={"request": haiku(), "webhook_url": url})
    assert r.status_code == 400, r.text
    assert "webhook_url" in r.json()["error"]["message"]
    assert strict.query("SELECT COUNT(*) FROM tasks") == [(0,)]


@pytest.fixture(scope="module")
def strict(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with the default webhook policy."""
    g = task_gateway(fake.url, tmp_path_factory.mktemp("strict"), tasks={"allow_private_webhooks": False}).start()
    yield g
    g.stop()


def test_a_webhook_that_keeps_failing_is_retried_until_the_retry_period_ends_then_marked_failed(
        fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> None:
    g = task_gateway(fake.url, tmp_path_factory.mktemp("hookfail"), tasks={"webhook_retry_seconds": 4}).start()
    down = WebhookReceiver([500] * 100).start()
    try:
        acct = g.account(usd="10")
        t = submit(g, acct["key"], haiku(), webhook_url=down.url)
        deadline = time.time() + 20
        while get(g, acct["key"], t["id"])["webhook_status"] != "failed":
            assert time.time() < deadline, "the webhook was never given up"
            time.sleep(0.2)
        shown = get(g, acct["key"], t["id"])
        codes = [d["status_code"] for d in shown["webhook_deliveries"]]
        assert len(codes) >= 2 and set(codes) == {500} and len(down.got) == len(codes)
        time.sleep(2)
        assert len(down.got) == len(codes)  # given up: no more attempts
    finally:
        down.stop()
        g.stop()
