"""Card top-ups through Stripe Checkout, against a local fake of Stripe's API and webhooks
signed with the test secret the way Stripe signs them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adminclient import Admin
from conftest import Gateway
from conftest import test_config as gateway_config
from fakestripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, sign
from fakeupstream import FakeUpstream


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[FakeStripe]:
    f = FakeStripe().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def paying(fake: FakeUpstream, stripe_fake: FakeStripe, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("gw-stripe")
    cfg = gateway_config(fake.url, d / "bytespike.db")
    cfg["payments"] = {"stripe": {"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET,
                                  "api_base": stripe_fake.url}}
    gw = Gateway(d, cfg).start()
    yield gw
    gw.stop()


def hook(gw: Gateway, payload: bytes, signature: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["stripe-signature"] = signature
    return httpx.post(gw.url + "/webhooks/stripe", content=payload, headers=headers, timeout=30)


def checkout(admin: Admin, email: str, usd: Any, expect: int = 201) -> Any:
    return admin.post(f"/wallets/{email}/checkout", {"usd": usd, "success_url": "https://console.example/ok",
                                                     "cancel_url": "https://console.example/cancel"}, expect)


def new_person(admin: Admin) -> str:
    email = f"card-{time.time_ns()}@example.com"
    admin.post("/users", {"email": email}, 201)
    return email


def test_a_checkout_session_is_made_for_the_account_with_the_amount_in_cents(paying: Gateway,
                                                                            stripe_fake: FakeStripe) -> None:
    admin = Admin(paying)
    email = new_person(admin)
    got = checkout(admin, email, "25")
    assert got["amount_usd"] == "25" and got["url"].startswith("https://checkout.stripe.com/")
    sent = stripe_fake.requests[-1]
    user = admin.get(f"/users/{email}")
    assert sent["mode"] == "payment" and sent["client_reference_id"] == user["account_id"]
    assert sent["line_items"][0]["price_data"] == {"currency": "usd", "unit_amount": "2500",
                                                   "product_data": {"name": "ByteSpike credit"}}
    assert admin.get(f"/wallets/{email}")["balance_usd"] == "0"  # nothing until Stripe says it is paid


def test_a_signed_webhook_credits_once_and_replays_and_second_deliveries_credit_nothing(
        paying: Gateway, stripe_fake: FakeStripe) -> None:
    admin = Admin(paying)
    email = new_person(admin)
    session = checkout(admin, email, "12.5")["session_id"]
    event = stripe_fake.event(session)
    first = hook(paying, event, sign(event))
    assert first.status_code == 200 and first.json()["credited"] is True
    assert admin.get(f"/wallets/{email}")["balance_usd"] == "12.5"
    replay = hook(paying, event, sign(event))  # the same event again
    time.sleep(1.1)
    redelivery = hook(paying, event, sign(event))  # Stripe's retry: same event, new timestamp and signature
    assert [r.status_code for r in (replay, redelivery)] == [200, 200]
    assert not replay.json()["credited"] and not redelivery.json()["credited"]
    other = stripe_fake.event(session, "checkout.session.async_payment_succeeded")  # another event, same session
    assert hook(paying, other, sign(other)).json()["credited"] is False
    wallet = admin.get(f"/wallets/{email}")
    assert wallet["balance_usd"] == "12.5"
    assert [(e["kind"], e["amount_usd"], e["note"]) for e in wallet["ledger"]] == [("topup", "12.5", "card payment")]
    credits = [e for e in admin.get("/audit", action="payment.credit")["data"] if e["details"]["usd"] == "12.5"]
    assert credits and credits[0]["actor"] == "stripe"


def test_a_bad_signature_is_refused_with_400_and_credits_nothing(paying: Gateway, stripe_fake: FakeStripe) -> None:
    admin = Admin(paying)
    email = new_person(admin)
    session = checkout(admin, email, "5")["session_id"]
    event = stripe_fake.event(session)
    tampered = event.replace(b'"amount_total":500', b'"amount_total":50000')
    assert tampered != event
    for payload, signature in [
        (event, sign(event, "whsec_not_the_secret")),
        (tampered, sign(event)),
        (event, None),
        (event, "t=1,v1=00"),
        (event, sign(event, t=int(time.time()) - 3600)),  # too old: a captured event replayed later
        (b"not json", sign(b"not json")),
    ]:
        r = hook(paying, payload, signature)
        assert r.status_code == 400, (signature, r.text)
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert admin.get(f"/wallets/{email}")["balance_usd"] == "0"
    assert hook(paying, event, sign(event)).json()["credited"] is True
    assert admin.get(f"/wallets/{email}")["balance_usd"] == "5"


def test_card_top_ups_under_5_usd_or_finer_than_a_cent_are_refused(paying: Gateway, stripe_fake: FakeStripe) -> None:
    admin = Admin(paying)
    email = new_person(admin)
    before = len(stripe_fake.requests)
    for usd in ("4.99", 1, "0", "5.001", "-10"):
        got = checkout(admin, email, usd, 400)
        assert "usd" in got["error"]["message"], got
    assert len(stripe_fake.requests) == before  # Stripe never asked
    assert checkout(admin, email, 5)["amount_usd"] == "5"


def test_a_stripe_error_is_a_clean_502_without_provider_details(paying: Gateway, stripe_fake: FakeStripe) -> None:
    admin = Admin(paying)
    email = new_person(admin)
    stripe_fake.fail_next = (400, {"error": {"type": "invalid_request_error", "message": "sk_test_leak detail"}})
    got = checkout(admin, email, "10", 502)
    assert got["error"]["type"] == "api_error" and "sk_test" not in str(got)


def test_without_stripe_configured_card_top_up_is_absent(gateway: Gateway) -> None:
    admin = Admin(gateway)
    email = new_person(admin)
    got = checkout(admin, email, "10", 404)
    assert got["error"]["type"] == "not_found_error"
    assert "/admin/v1/wallets/{account}/checkout" not in admin.get("/openapi.json")["paths"]
    r = hook(gateway, b"{}", sign(b"{}"))
    assert r.status_code == 404
