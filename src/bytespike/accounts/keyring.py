"""API keys as people and operators manage them: create in an allowed group, list, revoke."""

from __future__ import annotations

import time
from typing import Any

from bytespike.accounts import access
from bytespike.accounts import keys as auth
from bytespike.accounts.audit import record
from bytespike.accounts.errors import Actor, Forbidden, Invalid, NotFound
from bytespike.billing import limits as lim
from bytespike.config import Settings
from bytespike.store import pages, people
from bytespike.store.accounts import Accounts, insert_key, mark_revoked
from bytespike.store.db import Database

MAX_CONCURRENCY = 10_000
MAX_LIMITS = 16


def limit_specs(limits: Any) -> list[str]:
    """Window caps as ``5h:usd=10,requests=100`` strings, or objects ``{window, usd?, requests?, tokens?}``."""
    if limits is None:
        return []
    if not isinstance(limits, list) or len(limits) > MAX_LIMITS:
        raise Invalid("limits", f"expected a list of at most {MAX_LIMITS} window caps")
    out = []
    for i, item in enumerate(limits):
        if isinstance(item, dict):
            unknown = set(item) - {"window", "usd", "requests", "tokens"}
            if unknown or not isinstance(item.get("window"), str):
                raise Invalid(f"limits[{i}]", "expected {window, usd?, requests?, tokens?}")
            caps = [f"{k}={item[k]}" for k in ("usd", "requests", "tokens") if item.get(k) is not None]
            item = item["window"] + (":" + ",".join(caps) if caps else "")
        if not isinstance(item, str) or len(item) > 200:
            raise Invalid(f"limits[{i}]", "expected text like 5h:usd=10,requests=100")
        try:
            out.append(lim.format_limit_spec(lim.parse_limit_spec(item)))
        except ValueError as exc:
            raise Invalid(f"limits[{i}]", str(exc)) from None
    return out


class Keyring:
    def __init__(self, db: Database, accounts: Accounts, settings: Settings) -> None:
        self.db = db
        self.accounts = accounts
        self.settings = settings

    def groups_for(self, kind: str) -> tuple[tuple[str, ...], str]:
        """(the groups an account of ``kind`` may create keys in, its default)."""
        tier = self.settings.tier(kind)
        return tier.groups, tier.default_group

    async def create(self, actor: Actor, account: str | None, *, group: Any = None, name: Any = "",
                     limits: Any = None, max_concurrency: Any = None, expires_at: Any = None) -> dict[str, Any]:
        """A new key, shown once in ``key``; stored only as its hash."""
        specs = limit_specs(limits)
        if max_concurrency is not None and (isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
                                            or not 1 <= max_concurrency <= MAX_CONCURRENCY):
            raise Invalid("max_concurrency", f"expected a whole number from 1 to {MAX_CONCURRENCY}")
        if not isinstance(name, str) or len(name) > 200:
            raise Invalid("name", "expected text of at most 200 characters")
        if expires_at is not None and (isinstance(expires_at, bool) or not isinstance(expires_at, (int, float))
                                       or expires_at <= time.time()):
            raise Invalid("expires_at", "expected a time in the future, in epoch seconds")
        async with self.db.write() as conn:
            sc = await access.scope(conn, actor, account)
            allowed, default = self.groups_for(sc.wallet.kind)
            group = group if group is not None else default
            if not isinstance(group, str) or group not in self.settings.groups:
                raise Invalid("group", f"unknown group {str(group)[:100]!r} (configured: "
                                       f"{', '.join(self.settings.groups)})")
            if group not in allowed:
                tier = "organization" if sc.wallet.kind == "org" else "personal"
                raise Invalid("group", f"{tier} accounts may create keys in: {', '.join(allowed)}")
            key, digest, prefix = auth.mint()
            row = await insert_key(conn, sc.wallet.id, digest, prefix, group,
                                   user_id=sc.wallet.user_id, name=name, limits=specs,
                                   max_concurrency=max_concurrency, expires_at=expires_at)
            await record(conn, actor, "key.create", row["id"], account=sc.wallet.name, group=group, name=name,
                         limits=specs, max_concurrency=max_concurrency)
        await self.accounts.keys_changed(row["id"])
        return {**row, "key": key, "account": sc.wallet.name}

    async def page(self, actor: Actor, account: str | None, limit: int = pages.DEFAULT_LIMIT,
                   cursor: str | None = None) -> pages.Page:
        """An owner and operators see every key on the wallet; a member only their own."""
        async with self.db.read() as conn:
            sc = await access.scope(conn, actor, account)
        got = await self.accounts.keys_page(sc.wallet.id, limit, cursor, user_id=sc.user_id)
        for k in got.items:
            k["status"] = _status(k)
        return got

    async def revoke(self, actor: Actor, key_id: Any) -> dict[str, Any]:
        """Its owner, an owner of its org wallet, or an operator revokes it; it stops working at once."""
        if not isinstance(key_id, str) or len(key_id) > 64:
            raise Invalid("id", "expected a key id")
        key = await self.accounts.key(key_id)
        async with self.db.write() as conn:
            if not actor.is_operator and key["user_id"] != actor.user_id:
                assert actor.user_id is not None
                m = await people.membership(conn, key["account_id"], actor.user_id)
                if m is None or m.role != "owner":
                    raise Forbidden("you may only revoke your own keys")
            changed = await mark_revoked(conn, key_id, time.time())
            if changed:
                await record(conn, actor, "key.revoke", key_id, account_id=key["account_id"])
        if changed:
            await self.accounts.keys_changed(key_id)
        return {"id": key_id, "revoked": True}

    async def get(self, actor: Actor, key_id: str) -> dict[str, Any]:
        key = await self.accounts.key(key_id)
        if not actor.is_operator and key["user_id"] != actor.user_id:
            async with self.db.read() as conn:
                assert actor.user_id is not None
                m = await people.membership(conn, key["account_id"], actor.user_id)
            if m is None or m.role != "owner":
                raise NotFound(f"no key with id {key_id!r}")
        key["status"] = _status(key)
        return key


def _status(k: dict[str, Any]) -> str:
    if k.get("revoked_at"):
        return "revoked"
    if k.get("expires_at") and k["expires_at"] <= time.time():
        return "expired"
    return "active"
