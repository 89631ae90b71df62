"""Whose wallet a name means, and what an actor may do with it.

An operator may act on any account. A person acts on the wallet they spend from: their own, or
their organization's, where an ``owner`` manages members, sees everyone's keys and usage and
revokes any member's key, and a ``member`` sees only their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.accounts.errors import Actor, Forbidden, Invalid, NotFound
from bytespike.store import people


@dataclass(frozen=True, slots=True)
class Wallet:
    id: str
    kind: str  # user | org
    name: str
    user_id: str | None = None  # the person a name (an email) meant, if it meant one


@dataclass(frozen=True, slots=True)
class Scope:
    """What an actor sees of a wallet: everything, or (``user_id`` set) only one person's part."""

    wallet: Wallet
    user_id: str | None
    role: str | None  # the actor's role in the wallet's org, if any


async def wallet_named(conn: AsyncConnection, name: str) -> Wallet:
    """A person's email means the wallet they spend from; anything else an organization's name."""
    name = (name or "").strip()
    u = await people.user_by_email(conn, name.lower())
    if u is not None:
        a = await people.account_by_id(conn, u.account_id)
        return Wallet(a.id, a.kind, a.name, u.id)
    a = await people.account_by_name(conn, name)
    if a is None:
        raise NotFound(f"no user or organization named {name!r}")
    return Wallet(a.id, a.kind, a.name)


async def scope(conn: AsyncConnection, actor: Actor, name: str | None, *, manage: bool = False) -> Scope:
    """The wallet ``name`` means to ``actor``; a person without ``name`` gets their own.

    ``manage``: the action needs an owner's rights (or an operator's) on an org wallet.
    """
    if actor.is_operator:
        if not name:
            raise Invalid("account", "name the account: an email or an organization")
        return Scope(await wallet_named(conn, name), None, None)
    assert actor.user_id is not None
    me = await people.user_by_id(conn, actor.user_id)
    if me is None:
        raise Forbidden("this person no longer exists")
    a = await people.account_by_id(conn, me.account_id)
    wallet = Wallet(a.id, a.kind, a.name, me.id)
    if name and name.strip().lower() not in (me.email, a.name.lower()):
        raise Forbidden("you may only act on your own account")
    role = None
    if a.kind == "org":
        m = await people.membership(conn, a.id, me.id)
        role = m.role if m is not None else "member"
    if manage and a.kind == "org" and role != "owner":
        raise Forbidden("only an owner of the organization may do this")
    return Scope(wallet, None if role == "owner" else me.id, role)


async def org_named(conn: AsyncConnection, name: str):  # type: ignore[no-untyped-def]
    a = await people.account_by_name(conn, (name or "").strip())
    if a is None or a.kind != "org":
        raise NotFound(f"no organization named {name!r}")
    return a


async def require_owner(conn: AsyncConnection, actor: Actor, org_id: str) -> None:
    if actor.is_operator:
        return
    assert actor.user_id is not None
    m = await people.membership(conn, org_id, actor.user_id)
    if m is None or m.role != "owner":
        raise Forbidden("only an owner of the organization may do this")
