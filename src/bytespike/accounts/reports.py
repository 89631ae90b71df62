"""Usage reports: spend per model since a time and each key's rolling windows, the object
``bytespike usage --json`` prints; owners see their org's members, members only themselves."""

from __future__ import annotations

import time
from typing import Any

from bytespike.accounts import access
from bytespike.accounts.errors import Actor, Forbidden, Invalid, NotFound
from bytespike.billing import limits as lim
from bytespike.billing import money
from bytespike.billing.service import Billing
from bytespike.store import pages, people
from bytespike.store import usage as usage_store
from bytespike.store.accounts import Accounts, KeyRecord
from bytespike.store.db import Database


def window_json(w: lim.WindowState) -> dict[str, Any]:
    """One rolling window (USD as decimal strings)."""
    return {"window": w.name, "seconds": w.seconds, "spend_usd": money.format_usd(w.usd_used),
            "usd_cap": money.format_usd(w.usd_cap) if w.usd_cap is not None else None,
            "requests": w.requests_used, "requests_cap": w.requests_cap,
            "tokens": w.tokens_used, "tokens_cap": w.tokens_cap,
            "resets_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(w.resets_at)) if w.resets_at else None}


def since_seconds(since: Any) -> int:
    try:
        return lim.parse_duration(since if isinstance(since, str) else "")
    except ValueError:
        raise Invalid("since", f"{str(since)[:40]!r} is not a duration such as 30m, 5h, 1d, 7d") from None


class UsageReports:
    def __init__(self, db: Database, accounts: Accounts, billing: Billing) -> None:
        self.db = db
        self.accounts = accounts
        self.billing = billing

    async def _scope(self, actor: Actor, account: str | None, member: str | None) -> tuple[access.Scope, str | None]:
        async with self.db.read() as conn:
            sc = await access.scope(conn, actor, account)
            user_id = sc.user_id
            if member:
                u = await people.user_by_email(conn, member.strip().lower())
                if u is None or (await people.membership(conn, sc.wallet.id, u.id)) is None:
                    raise NotFound(f"{member} is not a member of {sc.wallet.name!r}")
                if user_id is not None and user_id != u.id:
                    raise Forbidden("members see only their own usage")
                user_id = u.id
        return sc, user_id

    async def summary(self, actor: Actor, account: str | None, since: str = "1d",
                      member: str | None = None) -> dict[str, Any]:
        seconds = since_seconds(since)
        sc, user_id = await self._scope(actor, account, member)
        rows = await self.accounts.usage_summary(sc.wallet.id, time.time() - seconds, user_id)
        keys = []
        for k in await self.accounts.list_keys(sc.wallet.id):
            if k["revoked_at"] or (user_id is not None and k["user_id"] != user_id):
                continue
            rec = KeyRecord(k["id"], k["account_id"], k["user_id"], k["group"], k["name"], tuple(k["limits"]),
                            k["max_concurrency"], None, k["expires_at"])
            keys.append({"id": k["id"], "name": k["name"], "group": k["group"], "max_concurrency": k["max_concurrency"],
                         "windows": [window_json(w) for w in await self.billing.recorded_windows(rec)]})
        sessions: list[dict[str, Any]] = []
        if user_id is None:  # Claude Code sessions are counted per wallet, not per person
            async with self.db.read() as conn:
                sessions = await usage_store.by_session(conn, sc.wallet.id, time.time() - seconds)
        for sess in sessions:
            sess["cost_usd"] = money.format_usd(sess.pop("cost"))
        total = sum(r["cost"] for r in rows)
        models = [{**{k: v for k, v in r.items() if k != "cost"}, "cost_usd": money.format_usd(r["cost"])}
                  for r in rows]
        return {"account": sc.wallet.name, "since": since, "models": models, "total_usd": money.format_usd(total),
                "requests": sum(r["requests"] for r in rows), "keys": keys, "sessions": sessions}

    async def daily(self, actor: Actor, account: str | None, days: int = 7,
                    member: str | None = None) -> list[dict[str, Any]]:
        """Spend per UTC day and model over the last ``days`` days (today included), for charts."""
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
            raise Invalid("days", "expected a whole number from 1 to 366")
        sc, user_id = await self._scope(actor, account, member)
        start = (int(time.time()) // 86400 - (days - 1)) * 86400
        rows = await self.accounts.usage_daily(sc.wallet.id, start, user_id)
        return [{**{k: v for k, v in r.items() if k not in ("cost", "day")},
                 "day": time.strftime("%Y-%m-%d", time.gmtime(r["day"] * 86400)),
                 "cost_usd": money.format_usd(r["cost"])} for r in rows]

    async def records(self, actor: Actor, account: str | None, since: str = "7d", member: str | None = None,
                      limit: int = pages.DEFAULT_LIMIT, cursor: str | None = None) -> pages.Page:
        """Single requests, newest first: status, tokens, cost."""
        seconds = since_seconds(since)
        sc, user_id = await self._scope(actor, account, member)
        got = await self.accounts.usage_page(sc.wallet.id, time.time() - seconds, limit, cursor, user_id)
        return pages.Page([{**{k: v for k, v in r.items() if k not in ("cost", "id")}, "cost_usd":
                            money.format_usd(r["cost"])} for r in got.items], got.next_cursor)
