"""Organizations: one wallet its members spend from; owners add and remove members."""

from __future__ import annotations

import time
from typing import Any

from bytespike.accounts import access
from bytespike.accounts.audit import record
from bytespike.accounts.errors import Actor, Conflict, Forbidden, Invalid, NotFound
from bytespike.accounts.people import normal_email
from bytespike.store import pages, people
from bytespike.store.accounts import Accounts, insert_org, insert_user
from bytespike.store.db import Database

ROLES = ("owner", "member")


def _org_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or "@" in name or len(name) > 200 or "/" in name:
        raise Invalid("name", f"{str(name)[:100]!r} is not a valid organization name (no '@' or '/', "
                              "at most 200 characters)")
    return name.strip()


class Orgs:
    def __init__(self, db: Database, accounts: Accounts) -> None:
        self.db = db
        self.accounts = accounts

    async def create(self, actor: Actor, name: Any) -> dict:
        """A new organization; a person creating one becomes its owner and spends from its wallet."""
        name = _org_name(name)
        async with self.db.write() as conn:
            if not actor.is_operator:
                assert actor.user_id is not None
                if await people.membership_of(conn, actor.user_id) is not None:
                    raise Conflict("you already belong to an organization")
            org = await insert_org(conn, name)
            if not actor.is_operator:
                assert actor.user_id is not None
                await people.add_membership(conn, org["id"], actor.user_id, "owner", time.time())
                await people.set_wallet(conn, actor.user_id, org["id"], org["id"])
            await record(conn, actor, "org.create", name)
        return {**org, "members": await self.members(actor, name)}

    async def show(self, actor: Actor, name: str) -> dict:
        async with self.db.read() as conn:
            org = await access.org_named(conn, name)
        return {"id": org.id, "name": org.name, "created_at": org.created_at,
                "members": await self.members(actor, name)}

    async def members(self, actor: Actor, name: str) -> list[dict[str, Any]]:
        """Operators and the org's own members see who belongs to it."""
        async with self.db.read() as conn:
            org = await access.org_named(conn, name)
            if not actor.is_operator:
                assert actor.user_id is not None
                if await people.membership(conn, org.id, actor.user_id) is None:
                    raise Forbidden("you are not a member of this organization")
            return await people.members(conn, org.id)

    async def page(self, actor: Actor, limit: int = pages.DEFAULT_LIMIT, cursor: str | None = None) -> pages.Page:
        if not actor.is_operator:
            raise Forbidden("the list of organizations is for operators")
        async with self.db.read() as conn:
            return await people.list_orgs(conn, limit, cursor)

    async def add_member(self, actor: Actor, name: str, email: Any, role: Any = "member") -> dict:
        """Add a person (created without a password if new) or change a member's role.

        A person who belongs to another organization must leave it first; one who spent from their
        own wallet spends from the org's from now on (keys made on their own wallet keep charging it).
        """
        email = normal_email(email)
        if role not in ROLES:
            raise Invalid("role", f"{str(role)[:50]!r} is not a role (owner or member)")
        now = time.time()
        async with self.db.write() as conn:
            org = await access.org_named(conn, name)
            await access.require_owner(conn, actor, org.id)
            u = await people.user_by_email(conn, email)
            if u is None:
                created = await insert_user(conn, email, None, None)
                u = await people.user_by_id(conn, created["id"])
            current = await people.membership_of(conn, u.id)
            if current is not None and current.org_id != org.id:
                raise Conflict(f"{email} belongs to the organization {current.org!r}; remove them there first")
            if current is None:
                await people.add_membership(conn, org.id, u.id, role, now)
                await people.set_wallet(conn, u.id, org.id, org.id)
            elif current.role != role:
                if current.role == "owner" and await people.owners(conn, org.id) <= 1:
                    raise Conflict("an organization keeps at least one owner")
                await people.set_role(conn, org.id, u.id, role)
            await record(conn, actor, "org.member.add", org.name, email=email, role=role)
        return {"org": org.name, "email": email, "user_id": u.id, "role": role}

    async def remove_member(self, actor: Actor, name: str, email: Any) -> dict:
        """The person goes back to their own wallet; their keys on the org's wallet are revoked."""
        email = normal_email(email)
        now = time.time()
        async with self.db.write() as conn:
            org = await access.org_named(conn, name)
            u = await people.user_by_email(conn, email)
            leaving_self = u is not None and actor.user_id == u.id
            if not leaving_self:
                await access.require_owner(conn, actor, org.id)
            m = await people.membership(conn, org.id, u.id) if u is not None else None
            if u is None or m is None:
                raise NotFound(f"{email} is not a member of {org.name!r}")
            if m.role == "owner" and await people.owners(conn, org.id) <= 1:
                raise Conflict("an organization keeps at least one owner")
            await people.remove_membership(conn, org.id, u.id)
            own = await people.account_by_name(conn, email)
            await people.set_wallet(conn, u.id, own.id, None)
            revoked = await people.revoke_keys_of(conn, u.id, org.id, now)
            await record(conn, actor, "org.member.remove", org.name, email=email, revoked_keys=revoked)
        if revoked:
            self.accounts.keys_changed()
        return {"org": org.name, "email": email, "removed": True, "revoked_keys": revoked}
