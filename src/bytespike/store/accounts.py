"""People, organisations, their wallets' ledgers and their API keys."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Integer, and_, case, cast, func, insert, or_, select, update

from bytespike.store import ledger as books
from bytespike.store import pages
from bytespike.store.db import Database
from bytespike.store.schema import accounts, api_keys, holds, ledger, memberships, usage_records, users


class NotFound(LookupError):
    """An account, user or key that does not exist; the message says which."""


class Conflict(ValueError):
    """Something that already exists."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    account_id: str
    user_id: str | None
    group: str
    name: str
    limits: tuple[str, ...]
    max_concurrency: int | None
    revoked_at: float | None
    expires_at: float | None


def key_from_row(row) -> KeyRecord:  # type: ignore[no-untyped-def]
    return KeyRecord(
        id=row.id,
        account_id=row.account_id,
        user_id=row.user_id,
        group=row.group_name,
        name=row.name,
        limits=tuple(orjson.loads(row.limits or "[]")),
        max_concurrency=row.max_concurrency,
        revoked_at=row.revoked_at,
        expires_at=row.expires_at,
    )


class Accounts:
    """``announce(key_id)`` tells other instances a key changed (Redis pub/sub), after the commit."""

    def __init__(self, db: Database, announce: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.db = db
        self.announce = announce

    # ------------------------------------------------------------ people and orgs

    async def create_user(self, email: str, org: str | None = None, password_hash: str | None = None) -> dict:
        async with self.db.write() as conn:
            return await insert_user(conn, email, org, password_hash)

    async def create_org(self, name: str) -> dict:
        async with self.db.write() as conn:
            return await insert_org(conn, name)

    async def usage_summary(self, account_id: str, since: float, user_id: str | None = None) -> list[dict]:
        """Per model since ``since``; with ``user_id``, only the requests made with that person's keys."""
        u = usage_records.c
        mine = [u.key_id.in_(select(api_keys.c.id).where(api_keys.c.user_id == user_id))] if user_id else []
        async with self.db.read() as conn:
            rows = (await conn.execute(
                select(
                    u.model_asked,
                    func.count(),
                    func.sum(case((u.status == "failed", 1), else_=0)),
                    func.sum(u.input_tokens), func.sum(u.output_tokens), func.sum(u.cache_read_tokens),
                    func.sum(u.cache_write_5m_tokens + u.cache_write_1h_tokens), func.sum(u.cost),
                ).where(u.account_id == account_id, u.created_at >= since, *mine).group_by(u.model_asked)
                .order_by(u.model_asked)
            )).all()
        return [{"model": r[0], "requests": int(r[1]), "failed": int(r[2] or 0), "input_tokens": int(r[3] or 0),
                 "output_tokens": int(r[4] or 0), "cache_read_tokens": int(r[5] or 0),
                 "cache_write_tokens": int(r[6] or 0), "cost": int(r[7] or 0)} for r in rows]

    async def usage_daily(self, account_id: str, since: float, user_id: str | None = None) -> list[dict]:
        """Per UTC day and model since ``since`` (for charts); with ``user_id``, that person's keys only."""
        u = usage_records.c
        mine = [u.key_id.in_(select(api_keys.c.id).where(api_keys.c.user_id == user_id))] if user_id else []
        async with self.db.read() as conn:
            day = (cast(u.created_at / 86400, Integer) if conn.dialect.name == "sqlite"
                   else cast(func.floor(u.created_at / 86400), Integer)).label("day")
            rows = (await conn.execute(
                select(day, u.model_asked, func.count(), func.sum(u.input_tokens), func.sum(u.output_tokens),
                       func.sum(u.cache_read_tokens), func.sum(u.cache_write_5m_tokens + u.cache_write_1h_tokens),
                       func.sum(u.cost))
                .where(u.account_id == account_id, u.created_at >= since, *mine)
                .group_by(day, u.model_asked).order_by(day, u.model_asked)
            )).all()
        return [{"day": int(r[0]), "model": r[1], "requests": int(r[2]), "input_tokens": int(r[3] or 0),
                 "output_tokens": int(r[4] or 0), "cache_read_tokens": int(r[5] or 0),
                 "cache_write_tokens": int(r[6] or 0), "cost": int(r[7] or 0)} for r in rows]

    async def account(self, email_or_org: str) -> dict:
        """The wallet a name spends from: a user's org wallet if they belong to one, else their own."""
        name = email_or_org.strip()
        async with self.db.read() as conn:
            u = (await conn.execute(select(users).where(users.c.email == name.lower()))).first()
            if u is not None:
                acct = (await conn.execute(select(accounts).where(accounts.c.id == u.account_id))).one()
                return {"id": acct.id, "kind": acct.kind, "name": acct.name, "user_id": u.id}
            a = (await conn.execute(select(accounts).where(accounts.c.name == name))).first()
            if a is None:
                raise NotFound(f"no user or organization named {name!r}")
            return {"id": a.id, "kind": a.kind, "name": a.name, "user_id": None}

    # ------------------------------------------------------------ wallet

    async def balance(self, account_id: str) -> tuple[int, int]:
        """(balance, open holds) in nano-USD."""
        async with self.db.read() as conn:
            bal = await books.balance(conn, account_id)
            held = (
                await conn.execute(
                    select(func.coalesce(func.sum(holds.c.amount), 0)).where(holds.c.account_id == account_id)
                )
            ).scalar_one()
        return bal, int(held)

    async def post(self, account_id: str, kind: str, amount: int, note: str = "", request_id: str | None = None,
                   key_id: str | None = None) -> int:
        """Append one ledger entry; returns the new balance."""
        async with self.db.write() as conn:
            return await append_entry(conn, account_id, kind, amount, note, request_id, key_id)

    async def ledger(self, account_id: str, limit: int = 50) -> list[dict]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(ledger).where(ledger.c.account_id == account_id).order_by(ledger.c.id.desc()).limit(limit)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def ledger_sum(self, account_id: str) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.coalesce(func.sum(ledger.c.amount), 0)).where(ledger.c.account_id == account_id)
                    )
                ).scalar_one()
            )

    # ------------------------------------------------------------ keys

    async def create_key(
        self,
        account_id: str,
        key_hash: str,
        prefix: str,
        group: str,
        *,
        user_id: str | None = None,
        name: str = "",
        limits: list[str] | None = None,
        max_concurrency: int | None = None,
        expires_at: float | None = None,
    ) -> KeyRecord:
        key_id = new_id("key")
        now = time.time()
        async with self.db.write() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=key_id,
                    key_hash=key_hash,
                    prefix=prefix,
                    account_id=account_id,
                    user_id=user_id,
                    group_name=group,
                    name=name,
                    limits=orjson.dumps(limits or []).decode(),
                    max_concurrency=max_concurrency,
                    created_at=now,
                    revoked_at=None,
                    expires_at=expires_at,
                )
            )
        await self._keys_changed(key_id)
        return KeyRecord(key_id, account_id, user_id, group, name, tuple(limits or ()), max_concurrency, None,
                         expires_at)

    async def _keys_changed(self, key_id: str) -> None:
        counter = self.db.key_changes
        if counter is not None:
            counter.bump()
        if self.announce is not None:
            await self.announce(key_id)

    async def list_keys(self, account_id: str) -> list[dict]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(api_keys).where(api_keys.c.account_id == account_id).order_by(api_keys.c.created_at)
                )
            ).all()
        return [_public_key(r) for r in rows]

    async def keys_page(self, account_id: str, limit: int, cursor: str | None,
                        user_id: str | None = None) -> pages.Page:
        """The account's keys oldest first (never their hashes); with ``user_id``, only that person's."""
        after = pages.decode(cursor, 2)
        k = api_keys.c
        last = select(func.max(usage_records.c.created_at)).where(usage_records.c.key_id == k.id).scalar_subquery()
        q = select(api_keys, last.label("last_used_at")).where(k.account_id == account_id)
        if user_id is not None:
            q = q.where(k.user_id == user_id)
        if after is not None:
            q = q.where(or_(k.created_at > after[0], and_(k.created_at == after[0], k.id > after[1])))
        async with self.db.read() as conn:
            rows = (await conn.execute(q.order_by(k.created_at, k.id).limit(limit + 1))).all()
        return pages.page([_public_key(r) for r in rows], limit, lambda r: [r["created_at"], r["id"]])

    async def ledger_page(self, account_id: str, limit: int, cursor: str | None) -> pages.Page:
        """Ledger entries newest first."""
        before = pages.decode(cursor, 1)
        q = select(ledger).where(ledger.c.account_id == account_id)
        if before is not None:
            q = q.where(ledger.c.id < int(before[0]))
        async with self.db.read() as conn:
            rows = (await conn.execute(q.order_by(ledger.c.id.desc()).limit(limit + 1))).all()
        return pages.page([dict(r._mapping) for r in rows], limit, lambda r: [r["id"]])

    async def keys_changed(self, key_id: str = "*") -> None:
        """Tell every gateway process (and, with Redis, every instance) that keys changed, after the
        change is committed; ``*``: more than one key, or not known which."""
        await self._keys_changed(key_id)

    async def key(self, key_id: str) -> dict:
        async with self.db.read() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None:
            raise NotFound(f"no key with id {key_id!r}")
        return _public_key(row)

    async def usage_page(self, account_id: str, since: float, limit: int, cursor: str | None,
                         user_id: str | None = None) -> pages.Page:
        """Usage records newest first; with ``user_id``, only those made with that person's keys."""
        before = pages.decode(cursor, 1)
        u = usage_records.c
        q = select(usage_records).where(u.account_id == account_id, u.created_at >= since)
        if user_id is not None:
            q = q.where(u.key_id.in_(select(api_keys.c.id).where(api_keys.c.user_id == user_id)))
        if before is not None:
            q = q.where(u.id < int(before[0]))
        async with self.db.read() as conn:
            rows = (await conn.execute(q.order_by(u.id.desc()).limit(limit + 1))).all()
        return pages.page([dict(r._mapping) for r in rows], limit, lambda r: [r["id"]])

    async def revoke_key(self, key_id: str) -> None:
        async with self.db.write() as conn:
            res = await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(
                    revoked_at=time.time()
                )
            )
            if res.rowcount == 0:
                exists = (await conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id))).first()
                if exists is None:
                    raise NotFound(f"no key with id {key_id!r}")
        await self._keys_changed(key_id)

    async def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
        return key_from_row(row) if row is not None else None


async def insert_user(conn, email: str, org: str | None = None,  # type: ignore[no-untyped-def]
                      password_hash: str | None = None) -> dict:
    """A person with their own wallet; with ``org``, a member of it (created, and owned, if new)."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise ValueError(f"{email!r} is not an email address")
    now = time.time()
    if (await conn.execute(select(users.c.id).where(users.c.email == email))).first():
        raise Conflict(f"user {email} already exists")
    org_id = None
    role = "member"
    if org:
        row = (await conn.execute(select(accounts).where(accounts.c.name == org))).first()
        if row is None:
            org_id = new_id("org")
            role = "owner"  # whoever an organization is created with owns it
            await conn.execute(insert(accounts).values(id=org_id, kind="org", name=org, created_at=now))
        elif row.kind != "org":
            raise Conflict(f"{org!r} is a person's account, not an organization")
        else:
            org_id = row.id
    if (await conn.execute(select(accounts.c.id).where(accounts.c.name == email))).first():
        raise Conflict(f"an account named {email} already exists")
    personal = new_id("acct")
    await conn.execute(insert(accounts).values(id=personal, kind="user", name=email, created_at=now))
    user_id = new_id("user")
    await conn.execute(insert(users).values(id=user_id, email=email, account_id=org_id or personal, org_id=org_id,
                                            password_hash=password_hash, is_admin=False, created_at=now))
    if org_id is not None:
        await conn.execute(insert(memberships).values(org_id=org_id, user_id=user_id, role=role, created_at=now))
    return {"id": user_id, "email": email, "account_id": org_id or personal, "org": org,
            "role": role if org_id else None, "created_at": now}


async def insert_org(conn, name: str) -> dict:  # type: ignore[no-untyped-def]
    name = name.strip()
    if not name or "@" in name or len(name) > 200:
        raise ValueError(f"{name!r} is not a valid organization name")
    if (await conn.execute(select(accounts.c.id).where(accounts.c.name == name))).first():
        raise Conflict(f"an account named {name!r} already exists")
    org_id = new_id("org")
    now = time.time()
    await conn.execute(insert(accounts).values(id=org_id, kind="org", name=name, created_at=now))
    return {"id": org_id, "name": name, "created_at": now}


async def insert_key(conn, account_id: str, key_hash: str, prefix: str, group: str, *,  # type: ignore[no-untyped-def]
                     user_id: str | None, name: str, limits: list[str], max_concurrency: int | None,
                     expires_at: float | None) -> dict:
    """A key row in the caller's transaction; call ``Accounts.keys_changed`` after committing."""
    row = {"id": new_id("key"), "key_hash": key_hash, "prefix": prefix, "account_id": account_id,
           "user_id": user_id, "group_name": group, "name": name, "limits": orjson.dumps(limits).decode(),
           "max_concurrency": max_concurrency, "created_at": time.time(), "revoked_at": None,
           "expires_at": expires_at}
    await conn.execute(insert(api_keys).values(**row))
    out: dict[str, Any] = {k: v for k, v in row.items() if k != "key_hash"}
    out["group"] = out.pop("group_name")
    out["limits"] = limits
    return out


async def mark_revoked(conn, key_id: str, now: float) -> bool:  # type: ignore[no-untyped-def]
    """True if the key was live and is now revoked."""
    res = await conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                             .values(revoked_at=now))
    return res.rowcount == 1


def _public_key(row) -> dict:  # type: ignore[no-untyped-def]
    d = dict(row._mapping)
    d.pop("key_hash")
    d["limits"] = orjson.loads(d["limits"] or "[]")
    d["group"] = d.pop("group_name")
    return d


async def append_entry(conn, account_id: str, kind: str, amount: int, note: str = "",  # type: ignore[no-untyped-def]
                       request_id: str | None = None, key_id: str | None = None) -> int:
    """Append to the ledger inside the caller's write transaction; the balance is carried forward
    under the account's row lock (see ``store.ledger``)."""
    await books.lock_accounts(conn, [account_id])
    balance = await books.balance(conn, account_id) + amount
    await conn.execute(
        insert(ledger).values(
            account_id=account_id,
            kind=kind,
            amount=amount,
            balance_after=balance,
            request_id=request_id,
            key_id=key_id,
            note=note,
            created_at=time.time(),
        )
    )
    return balance
