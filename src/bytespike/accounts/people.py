"""People: sign-up and creation, passwords, sign-in with throttling, the operator's list."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import re
import time
from typing import Any

from bytespike.accounts import passwords
from bytespike.accounts.audit import record
from bytespike.accounts.errors import Actor, Forbidden, Invalid, LoginFailed, NotFound, Throttled
from bytespike.store import pages, people
from bytespike.store.accounts import insert_user
from bytespike.store.db import Database

LOGIN_FAILURES_ALLOWED = 10
"""Wrong passwords allowed per email and client address in ``LOGIN_WINDOW_SECONDS``; then refused."""
LOGIN_WINDOW_SECONDS = 60
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown emails, so they take as long as known ones."""
    return passwords.hash_password("not a password anyone has")


def normal_email(email: Any) -> str:
    if not isinstance(email, str) or len(email) > 320 or not _EMAIL.fullmatch(email.strip()):
        raise Invalid("email", f"{str(email)[:100]!r} is not an email address")
    return email.strip().lower()


def public_user(row: Any, org: str | None = None, role: str | None = None) -> dict[str, Any]:
    """A user as every interface shows it: never the password hash."""
    return {"id": row.id, "email": row.email, "account_id": row.account_id, "org": org, "role": role,
            "has_password": bool(row.password_hash), "created_at": row.created_at}


def invite_token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


class People:
    def __init__(self, db: Database, signup_open: bool = True) -> None:
        """``signup_open`` False: only operators make people, or an org invitation lets one sign up."""
        self.db = db
        self.signup_open = signup_open

    async def create(self, actor: Actor, email: Any, password: str | None = None, org: str | None = None) -> dict:
        """A person with their own wallet, or (``org``) a member of that organization's."""
        if not actor.is_operator:
            raise Forbidden("only operators create people; sign up instead")
        return await self._create(actor, email, password, org)

    async def sign_up(self, email: Any, password: Any, *, invite: str | None = None, via: str = "console") -> dict:
        """Self-service sign-up: a password is required; with sign-up closed, so is a valid
        invitation for this email (``Orgs.accept`` then makes the person a member)."""
        if not password:
            raise Invalid("password", "a password is required")
        if not self.signup_open and not await self._invited(email, invite):
            raise Forbidden("sign-up is closed: ask an operator, or an organization owner for an invitation")
        return await self._create(Actor.operator(f"signup:{via}"), email, password, None)

    async def _invited(self, email: Any, invite: str | None) -> bool:
        if not isinstance(invite, str) or not isinstance(email, str) or len(invite) > 100:
            return False
        async with self.db.read() as conn:
            inv = await people.invite_by_hash(conn, invite_token_hash(invite))
        return inv is not None and inv.accepted_at is None and inv.expires_at > time.time() and \
            (inv.email is None or inv.email == email.strip().lower())

    async def _create(self, actor: Actor, email: Any, password: Any, org: Any) -> dict:
        email = normal_email(email)
        if org is not None and (not isinstance(org, str) or not org.strip() or "@" in org or len(org) > 200):
            raise Invalid("org", f"{str(org)[:100]!r} is not a valid organization name")
        pw_hash = None
        if password is not None:
            problem = passwords.password_problem(password, email)
            if problem:
                raise Invalid("password", problem)
            pw_hash = await asyncio.to_thread(passwords.hash_password, password)
        async with self.db.write() as conn:
            user = await insert_user(conn, email, org.strip() if org else None, pw_hash)
            await record(conn, actor, "user.create", email, org=user["org"], role=user["role"],
                         password=pw_hash is not None)
        user["has_password"] = pw_hash is not None
        return user

    async def set_password(self, actor: Actor, email: Any, password: str, current: str | None = None) -> None:
        """Operators set anyone's; a person changes their own, giving the current one."""
        email = normal_email(email)
        problem = passwords.password_problem(password, email)
        if problem:
            raise Invalid("password", problem)
        async with self.db.read() as conn:
            u = await people.user_by_email(conn, email)
        if u is None:
            raise NotFound(f"no user {email!r}")
        if not actor.is_operator:
            if actor.user_id != u.id:
                raise Forbidden("you may only change your own password")
            if not await asyncio.to_thread(passwords.verify_password, current or "", u.password_hash):
                raise Invalid("current_password", "the current password is wrong")
        digest = await asyncio.to_thread(passwords.hash_password, password)
        async with self.db.write() as conn:
            await people.set_password_hash(conn, u.id, digest)
            await record(conn, actor, "user.password", email)

    async def sign_in(self, email: Any, password: Any, ip: str) -> dict:
        """The person whose email and password these are; LoginFailed, or Throttled after
        ``LOGIN_FAILURES_ALLOWED`` wrong passwords in a minute from one address for one email."""
        addr = (ip or "-")[:64]
        email = email.strip().lower()[:320] if isinstance(email, str) else ""
        now = time.time()
        async with self.db.read() as conn:
            failures = await people.recent_failures(conn, email, addr, now - LOGIN_WINDOW_SECONDS)
            u = await people.user_by_email(conn, email) if email else None
        if len(failures) >= LOGIN_FAILURES_ALLOWED:
            wait = failures[-LOGIN_FAILURES_ALLOWED] + LOGIN_WINDOW_SECONDS - now
            raise Throttled("too many failed sign-ins; try again later", max(1, math.ceil(wait)))
        stored = u.password_hash if u is not None and u.password_hash else _dummy_hash()
        ok = isinstance(password, str) and len(password) <= passwords.MAX_LENGTH and \
            await asyncio.to_thread(passwords.verify_password, password, stored)
        if not ok or u is None or not u.password_hash:
            async with self.db.write() as conn:
                await people.add_failure(conn, email, addr, now, now - 3600)
            raise LoginFailed("wrong email or password")
        async with self.db.write() as conn:
            await people.clear_failures(conn, email, addr)
            if passwords.needs_rehash(u.password_hash):
                await people.set_password_hash(conn, u.id, await asyncio.to_thread(passwords.hash_password, password))
            await record(conn, Actor.person(u.id, email), "user.sign_in", email, ip=addr)
        return await self.get(email)

    async def get(self, email: str) -> dict:
        async with self.db.read() as conn:
            u = await people.user_by_email(conn, email.strip().lower())
            if u is None:
                raise NotFound(f"no user {email!r}")
            m = await people.membership_of(conn, u.id)
        return public_user(u, m.org if m else None, m.role if m else None)

    async def by_id(self, user_id: str) -> dict:
        async with self.db.read() as conn:
            u = await people.user_by_id(conn, user_id)
            if u is None:
                raise NotFound(f"no user with id {user_id!r}")
            m = await people.membership_of(conn, u.id)
        return public_user(u, m.org if m else None, m.role if m else None)

    async def page(self, actor: Actor, limit: int = pages.DEFAULT_LIMIT, cursor: str | None = None) -> pages.Page:
        if not actor.is_operator:
            raise Forbidden("the list of people is for operators")
        async with self.db.read() as conn:
            got = await people.list_users(conn, limit, cursor)
        return pages.Page([{"id": r["id"], "email": r["email"], "account_id": r["account_id"], "org": r["org"],
                            "role": r["role"], "created_at": r["created_at"]} for r in got.items], got.next_cursor)
