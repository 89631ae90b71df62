"""Wallets: operator top-ups and what a wallet holds, in the shape ``bytespike wallet show --json`` prints."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from bytespike.accounts import access
from bytespike.accounts.audit import record
from bytespike.accounts.errors import Actor, Forbidden, Invalid
from bytespike.billing import money
from bytespike.store import pages
from bytespike.store.accounts import Accounts, append_entry
from bytespike.store.db import Database

MAX_TOPUP_USD = 1_000_000
LiveBalance = Callable[[str], Awaitable[tuple[int, int]]]


def parse_amount(value: Any, field: str = "usd", *, cents: bool = False) -> int:
    """A positive USD amount (a decimal string or a JSON number) -> nano-USD."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid(field, "expected a USD amount such as \"25\" or 12.5")
    try:
        nano = money.parse_usd(value)
    except ValueError as exc:
        raise Invalid(field, str(exc)) from None
    if nano <= 0:
        raise Invalid(field, "the amount must be positive")
    if nano > MAX_TOPUP_USD * money.NANO_PER_USD:
        raise Invalid(field, f"the amount must be at most {MAX_TOPUP_USD} USD")
    if cents and nano % (money.NANO_PER_USD // 100):
        raise Invalid(field, "card payments are in whole cents")
    return nano


def iso(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else ""


def ledger_entry(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "time": iso(r["created_at"]), "kind": r["kind"],
            "amount_usd": money.format_usd(r["amount"]), "balance_usd": money.format_usd(r["balance_after"]),
            "request_id": r["request_id"], "note": r["note"]}


class Wallets:
    def __init__(self, db: Database, accounts: Accounts, live: LiveBalance | None = None) -> None:
        """``live``: the gateway's own view of a balance (holds not yet written included)."""
        self.db = db
        self.accounts = accounts
        self.live = live

    async def topup(self, actor: Actor, name: str, usd: Any, note: Any = "") -> dict[str, Any]:
        if not actor.is_operator:
            raise Forbidden("top-ups by hand are for operators; redeem a code or pay by card")
        amount = parse_amount(usd)
        if not isinstance(note, str) or len(note) > 500:
            raise Invalid("note", "expected text of at most 500 characters")
        async with self.db.write() as conn:
            w = await access.wallet_named(conn, name)
            balance = await append_entry(conn, w.id, "topup", amount, note or "top-up")
            await record(conn, actor, "wallet.topup", w.name, usd=money.format_usd(amount), note=note)
        return {"account": w.name, "amount_usd": money.format_usd(amount), "balance_usd": money.format_usd(balance)}

    async def show(self, actor: Actor, name: str | None, limit: int = 20) -> dict[str, Any]:
        """Balance, open holds, what is available, and the newest ledger entries."""
        async with self.db.read() as conn:
            sc = await access.scope(conn, actor, name)
        w = sc.wallet
        bal, held = await (self.live(w.id) if self.live is not None else self.accounts.balance(w.id))
        rows = await self.accounts.ledger(w.id, max(0, min(limit, pages.MAX_LIMIT)))
        return {"account": w.name, "kind": w.kind, "balance_usd": money.format_usd(bal),
                "held_usd": money.format_usd(held), "available_usd": money.format_usd(bal - held),
                "ledger": [ledger_entry(r) for r in rows]}

    async def ledger(self, actor: Actor, name: str | None, limit: int = pages.DEFAULT_LIMIT,
                     cursor: str | None = None) -> pages.Page:
        async with self.db.read() as conn:
            sc = await access.scope(conn, actor, name)
        got = await self.accounts.ledger_page(sc.wallet.id, limit, cursor)
        return pages.Page([ledger_entry(r) for r in got.items], got.next_cursor)
