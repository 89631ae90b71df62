"""Card top-ups through Stripe Checkout.

A checkout session is made for at least ``MIN_USD``, linked to the wallet by
``client_reference_id``; the wallet is credited when Stripe's signed
``checkout.session.completed`` (or ``async_payment_succeeded``) webhook says it is paid. Each
event is handled once (its id is recorded), each session pays once (open -> paid), and the credit
goes to the ledger under the payment's id, so replays and second deliveries credit nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from bytespike.accounts import access
from bytespike.accounts.audit import record
from bytespike.accounts.errors import Actor, Invalid, Unavailable
from bytespike.accounts.wallets import parse_amount
from bytespike.billing import money
from bytespike.config import StripeConfig
from bytespike.store import payments
from bytespike.store.accounts import append_entry, new_id
from bytespike.store.db import Database

log = logging.getLogger("bytespike.accounts.payments")
MIN_USD = 5
MAX_USD = 10_000
_NANO_PER_CENT = money.NANO_PER_USD // 100
_TOLERANCE_SECONDS = 300  # Stripe's own default: an older signed event is a replay
_PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
STRIPE_ACTOR = Actor.operator("stripe")


def _url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")) or len(value) > 2000:
        raise Invalid(field, "expected an http(s) URL")
    return value


class CardPayments:
    def __init__(self, db: Database, config: StripeConfig) -> None:
        import stripe  # only when card payments are configured: the library is slow to import

        self._stripe = stripe
        self.db = db
        self.config = config
        base = {"api": config.api_base} if config.api_base else None
        self._client = stripe.StripeClient(config.secret_key, base_addresses=base,  # type: ignore[arg-type]
                                           max_network_retries=1)

    async def checkout(self, actor: Actor, account: str | None, usd: Any, success_url: Any,
                       cancel_url: Any) -> dict[str, Any]:
        """A Stripe Checkout session for ``usd`` (at least ``MIN_USD``); returns its id and the page to send the payer to."""
        amount = parse_amount(usd, cents=True)
        if amount < MIN_USD * money.NANO_PER_USD:
            raise Invalid("usd", f"card top-ups start at {MIN_USD} USD")
        if amount > MAX_USD * money.NANO_PER_USD:
            raise Invalid("usd", f"card top-ups are at most {MAX_USD} USD")
        success, cancel = _url(success_url, "success_url"), _url(cancel_url, "cancel_url")
        async with self.db.read() as conn:
            sc = await access.scope(conn, actor, account)
        payment_id = new_id("pay")
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": sc.wallet.id,
            "success_url": success,
            "cancel_url": cancel,
            "line_items": [{"quantity": 1, "price_data": {
                "currency": "usd", "unit_amount": amount // _NANO_PER_CENT,
                "product_data": {"name": "ByteSpike credit"}}}],
            "metadata": {"payment_id": payment_id, "account": sc.wallet.name},
        }
        try:
            session = await asyncio.to_thread(self._client.v1.checkout.sessions.create, params)  # type: ignore[arg-type]
        except self._stripe.StripeError as exc:  # its details stay in the log: they may name keys or settings
            log.warning("Stripe refused a checkout session: %s", exc)
            raise Unavailable(f"the payment provider could not start the checkout (HTTP {exc.http_status or '-'}); "
                              "try again later") from None
        now = time.time()
        async with self.db.write() as conn:
            await payments.insert_payment(conn, {
                "id": payment_id, "provider": "stripe", "account_id": sc.wallet.id, "user_id": sc.wallet.user_id,
                "session_id": session.id, "amount": amount, "status": "open", "created_at": now,
                "paid_at": None, "event_id": None})
            await record(conn, actor, "payment.checkout", sc.wallet.name, payment_id=payment_id,
                         usd=money.format_usd(amount))
        return {"id": payment_id, "session_id": session.id, "url": session.url, "account": sc.wallet.name,
                "amount_usd": money.format_usd(amount)}

    async def webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """Verify and apply one Stripe event; ``Invalid`` (400) for a bad signature or body."""
        try:
            self._stripe.WebhookSignature.verify_header(payload, signature or "", self.config.webhook_secret,
                                                  _TOLERANCE_SECONDS)
        except self._stripe.SignatureVerificationError:
            raise Invalid("stripe-signature", "the webhook signature does not verify") from None
        try:
            event = orjson.loads(payload)
            event_id, event_type = str(event["id"]), str(event["type"])
            session = event["data"]["object"] if event_type in _PAID_EVENTS else {}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise Invalid("body", "not a Stripe event") from None
        if not isinstance(session, dict) or session.get("payment_status") != "paid" \
                or str(session.get("currency", "")).lower() != "usd":
            return {"received": True, "credited": False}
        now = time.time()
        async with self.db.write() as conn:
            if not await payments.first_delivery(conn, event_id, event_type, now):
                return {"received": True, "credited": False, "duplicate": True}
            pay = await payments.by_session(conn, session.get("id", ""))
            if pay is None or pay.account_id != session.get("client_reference_id"):
                return {"received": True, "credited": False}
            if not await payments.mark_paid(conn, pay.session_id, event_id, now):
                return {"received": True, "credited": False, "duplicate": True}
            cents = session.get("amount_total")
            amount = cents * _NANO_PER_CENT if isinstance(cents, int) and cents > 0 else 0
            if amount:
                await append_entry(conn, pay.account_id, "topup", amount, "card payment",
                                   request_id=f"stripe:{pay.id}")
            await record(conn, STRIPE_ACTOR, "payment.credit", pay.account_id, payment_id=pay.id,
                         event_id=event_id, usd=money.format_usd(amount))
        return {"received": True, "credited": True}
