"""Redeem codes: operator-made, random, single use, optionally expiring.

A code is stored only as its hash. Redeeming is one write transaction: a conditional update
claims the code (only one caller can), and the credit goes to the ledger under the code's id,
which the ledger holds unique, so a code pays out once however many redeem it at the same instant.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

from bytespike.accounts import access
from bytespike.accounts.audit import record
from bytespike.accounts.errors import Actor, Conflict, Forbidden, Invalid, NotFound
from bytespike.accounts.wallets import parse_amount
from bytespike.billing import limits as lim
from bytespike.billing import money
from bytespike.store import pages, redeem
from bytespike.store.accounts import append_entry, new_id
from bytespike.store.db import Database

PREFIX = "BYTS"
MAX_COUNT = 1000
MAX_CODE_USD = 10_000


def _new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode()  # 120 bits, 24 characters
    return "-".join([PREFIX, *(raw[i:i + 6] for i in range(0, 24, 6))])


def _normal(code: str) -> str:
    return "".join(code.split()).upper()


def _digest(code: str) -> str:
    return hashlib.sha256(_normal(code).encode()).hexdigest()


def public_code(r: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    status = "redeemed" if r["redeemed_at"] else "expired" if r["expires_at"] and r["expires_at"] <= now else "open"
    return {"id": r["id"], "prefix": r["prefix"], "usd": money.format_usd(r["amount"]), "note": r["note"],
            "created_by": r["created_by"], "created_at": r["created_at"], "expires_at": r["expires_at"],
            "redeemed_at": r["redeemed_at"], "redeemed_by": r["redeemed_by"], "status": status}


class RedeemCodes:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, actor: Actor, usd: Any, count: Any = 1, expires_in: Any = None,
                     note: Any = "") -> dict[str, Any]:
        """``count`` new codes worth ``usd`` each; the codes appear only in this answer."""
        if not actor.is_operator:
            raise Forbidden("redeem codes are made by operators")
        amount = parse_amount(usd)
        if amount > MAX_CODE_USD * money.NANO_PER_USD:
            raise Invalid("usd", f"a code is worth at most {MAX_CODE_USD} USD")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise Invalid("count", f"expected a whole number from 1 to {MAX_COUNT}")
        expires_at = None
        if expires_in is not None:
            try:
                expires_at = time.time() + lim.parse_duration(expires_in if isinstance(expires_in, str) else "")
            except ValueError:
                raise Invalid("expires_in", "expected a duration such as 30m, 12h, 7d") from None
        if not isinstance(note, str) or len(note) > 500:
            raise Invalid("note", "expected text of at most 500 characters")
        now = time.time()
        codes = [_new_code() for _ in range(count)]
        rows = [{"id": new_id("rc"), "code_hash": _digest(c), "prefix": c[:11], "amount": amount, "note": note,
                 "created_by": actor.name, "created_at": now, "expires_at": expires_at, "redeemed_at": None,
                 "redeemed_by": None} for c in codes]
        async with self.db.write() as conn:
            await redeem.insert_codes(conn, rows)
            await record(conn, actor, "redeem_code.create", f"{count} code(s)", usd=money.format_usd(amount),
                         ids=[r["id"] for r in rows], expires_at=expires_at)
        return {"codes": codes, "ids": [r["id"] for r in rows], "usd": money.format_usd(amount),
                "expires_at": expires_at}

    async def redeem(self, actor: Actor, code: Any, account: str | None = None) -> dict[str, Any]:
        """Credit the code's value to the wallet once; a used, expired or unknown code is refused."""
        if not isinstance(code, str) or not 8 <= len(code) <= 100:
            raise Invalid("code", "expected a redeem code such as BYTS-XXXXXX-...")
        digest = _digest(code)
        now = time.time()
        async with self.db.write() as conn:
            sc = await access.scope(conn, actor, account)
            row = await redeem.by_hash(conn, digest)
            if row is None:
                raise NotFound("no such redeem code")
            if not await redeem.claim(conn, row.id, sc.wallet.id, now):
                if row.redeemed_at is not None or (await redeem.by_hash(conn, digest)).redeemed_at is not None:
                    raise Conflict("this redeem code has already been used")
                raise Conflict("this redeem code has expired")
            balance = await append_entry(conn, sc.wallet.id, "topup", row.amount, f"redeem code {row.prefix}",
                                         request_id=f"redeem:{row.id}")
            await record(conn, actor, "redeem_code.redeem", row.id, account=sc.wallet.name,
                         usd=money.format_usd(row.amount))
        return {"account": sc.wallet.name, "code_id": row.id, "amount_usd": money.format_usd(row.amount),
                "balance_usd": money.format_usd(balance)}

    async def page(self, actor: Actor, limit: int = pages.DEFAULT_LIMIT, cursor: str | None = None) -> pages.Page:
        if not actor.is_operator:
            raise Forbidden("the list of redeem codes is for operators")
        async with self.db.read() as conn:
            got = await redeem.list_codes(conn, limit, cursor)
        return pages.Page([public_code(r) for r in got.items], got.next_cursor)
