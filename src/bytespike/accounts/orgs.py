"""Organizations: one wallet its members spend from; owners add and remove members."""

from __future__ import annotations

import secrets
import time
from typing import Any

from bytespike.accounts import access
from bytespike.accounts.audit import record
from bytespike.accounts.errors import Actor, Conflict, Forbidden, Invalid, NotFound
from bytespike.accounts.people import invite_token_hash, normal_email
from bytespike.billing import limits as lim
from bytespike.store import pages, people
from bytespike.store.accounts import Accounts, insert_org, insert_user, new_id
from bytespike.store.db import Database

ROLES = ("owner", "member")
INVITE_PREFIX = "inv_"
DEFAULT_INVITE_LIFETIME = "7d"


_token_hash = invite_token_hash


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
            await self.accounts.keys_changed()
        return {"org": org.name, "email": email, "removed": True, "revoked_keys": revoked}

    # ------------------------------------------------------------ invites

    async def invite(self, actor: Actor, name: str, role: Any = "member", email: Any = None,
                     expires_in: Any = DEFAULT_INVITE_LIFETIME) -> dict:
        """A single-use invitation (its token goes in a link); ``email`` set: only that person may accept."""
        if role not in ROLES:
            raise Invalid("role", f"{str(role)[:50]!r} is not a role (owner or member)")
        email = normal_email(email) if email is not None else None
        try:
            lifetime = lim.parse_duration(expires_in if isinstance(expires_in, str) else "")
        except ValueError:
            raise Invalid("expires_in", "expected a duration such as 12h or 7d") from None
        token = INVITE_PREFIX + secrets.token_urlsafe(24)
        now = time.time()
        async with self.db.write() as conn:
            org = await access.org_named(conn, name)
            await access.require_owner(conn, actor, org.id)
            row = {"id": new_id("invite"), "token_hash": _token_hash(token), "org_id": org.id, "role": role,
                   "email": email, "created_by": actor.name, "created_at": now, "expires_at": now + lifetime,
                   "accepted_at": None, "accepted_by": None}
            await people.insert_invite(conn, row)
            await record(conn, actor, "org.invite", org.name, invite_id=row["id"], role=role, email=email)
        return {"id": row["id"], "token": token, "org": org.name, "role": role, "email": email,
                "expires_at": row["expires_at"]}

    async def invitation(self, token: Any) -> dict:
        """What an invite link offers (for the page that shows it); NotFound if it is not usable."""
        if not isinstance(token, str) or not token.startswith(INVITE_PREFIX) or len(token) > 100:
            raise NotFound("no such invitation")
        async with self.db.read() as conn:
            inv = await people.invite_by_hash(conn, _token_hash(token))
        if inv is None or inv.accepted_at is not None or inv.expires_at <= time.time():
            raise NotFound("this invitation is not valid (used, expired or unknown)")
        return {"org": inv.org, "role": inv.role, "email": inv.email, "expires_at": inv.expires_at}

    async def accept(self, actor: Actor, token: Any) -> dict:
        """The signed-in person joins the invite's org, once; a newcomer signs up first
        (``People.sign_up``) and then accepts."""
        if actor.is_operator:
            raise Forbidden("an invitation is accepted by the person invited")
        offer = await self.invitation(token)
        now = time.time()
        async with self.db.write() as conn:
            assert actor.user_id is not None
            me = await people.user_by_id(conn, actor.user_id)
            inv = await people.invite_by_hash(conn, _token_hash(token))
            if me is None or inv is None:
                raise NotFound("no such invitation")
            if inv.email and inv.email != me.email:
                raise Forbidden("this invitation is for someone else")
            current = await people.membership_of(conn, me.id)
            if current is not None:
                raise Conflict(f"you already belong to the organization {current.org!r}")
            if not await people.claim_invite(conn, inv.id, me.id, now):
                raise NotFound("this invitation is not valid (used, expired or unknown)")
            await people.add_membership(conn, inv.org_id, me.id, inv.role, now)
            await people.set_wallet(conn, me.id, inv.org_id, inv.org_id)
            await record(conn, actor, "org.invite.accept", offer["org"], invite_id=inv.id, role=inv.role)
        return {"org": offer["org"], "email": me.email, "user_id": me.id, "role": inv.role}
