"""People and organizations: users, memberships and roles, login failures."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.store import pages
from bytespike.store.schema import accounts, api_keys, invites, login_failures, memberships, users


def _public_user(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    d.pop("password_hash", None)
    return d


async def user_by_email(conn: AsyncConnection, email: str) -> Any:
    return (await conn.execute(select(users).where(users.c.email == email))).first()


async def user_by_id(conn: AsyncConnection, user_id: str) -> Any:
    return (await conn.execute(select(users).where(users.c.id == user_id))).first()


async def account_by_name(conn: AsyncConnection, name: str) -> Any:
    return (await conn.execute(select(accounts).where(accounts.c.name == name))).first()


async def account_by_id(conn: AsyncConnection, account_id: str) -> Any:
    return (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()


async def list_users(conn: AsyncConnection, limit: int, cursor: str | None) -> pages.Page:
    """Users oldest first, each with the organization it belongs to and its role there."""
    after = pages.decode(cursor, 2)
    org = accounts.alias("org")
    q = (select(users, org.c.name.label("org"), memberships.c.role)
         .select_from(users.outerjoin(org, org.c.id == users.c.org_id)
                      .outerjoin(memberships, and_(memberships.c.user_id == users.c.id,
                                                   memberships.c.org_id == users.c.org_id))))
    if after is not None:
        q = q.where(or_(users.c.created_at > after[0], and_(users.c.created_at == after[0], users.c.id > after[1])))
    rows = (await conn.execute(q.order_by(users.c.created_at, users.c.id).limit(limit + 1))).all()
    return pages.page([_public_user(r) for r in rows], limit, lambda r: [r["created_at"], r["id"]])


async def set_password_hash(conn: AsyncConnection, user_id: str, password_hash: str) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))


async def set_wallet(conn: AsyncConnection, user_id: str, account_id: str, org_id: str | None) -> None:
    """Which wallet the user spends from: an org's, or (``org_id`` None) their own."""
    await conn.execute(update(users).where(users.c.id == user_id).values(account_id=account_id, org_id=org_id))


# ---------------------------------------------------------------- organizations


async def list_orgs(conn: AsyncConnection, limit: int, cursor: str | None) -> pages.Page:
    after = pages.decode(cursor, 2)
    n = select(func.count()).where(memberships.c.org_id == accounts.c.id).scalar_subquery()
    q = select(accounts.c.id, accounts.c.name, accounts.c.created_at, n.label("members")).where(
        accounts.c.kind == "org")
    if after is not None:
        q = q.where(or_(accounts.c.created_at > after[0],
                        and_(accounts.c.created_at == after[0], accounts.c.id > after[1])))
    rows = (await conn.execute(q.order_by(accounts.c.created_at, accounts.c.id).limit(limit + 1))).all()
    return pages.page([dict(r._mapping) for r in rows], limit, lambda r: [r["created_at"], r["id"]])


async def membership(conn: AsyncConnection, org_id: str, user_id: str) -> Any:
    return (await conn.execute(select(memberships).where(memberships.c.org_id == org_id,
                                                         memberships.c.user_id == user_id))).first()


async def membership_of(conn: AsyncConnection, user_id: str) -> Any:
    """The user's membership (with the org's name), or None."""
    return (await conn.execute(
        select(memberships, accounts.c.name.label("org"))
        .select_from(memberships.join(accounts, accounts.c.id == memberships.c.org_id))
        .where(memberships.c.user_id == user_id))).first()


async def members(conn: AsyncConnection, org_id: str) -> list[dict[str, Any]]:
    rows = (await conn.execute(
        select(users.c.id, users.c.email, memberships.c.role, memberships.c.created_at)
        .select_from(memberships.join(users, users.c.id == memberships.c.user_id))
        .where(memberships.c.org_id == org_id).order_by(memberships.c.created_at, users.c.id))).all()
    return [dict(r._mapping) for r in rows]


async def add_membership(conn: AsyncConnection, org_id: str, user_id: str, role: str, now: float) -> None:
    await conn.execute(insert(memberships).values(org_id=org_id, user_id=user_id, role=role, created_at=now))


async def set_role(conn: AsyncConnection, org_id: str, user_id: str, role: str) -> None:
    await conn.execute(update(memberships).where(memberships.c.org_id == org_id, memberships.c.user_id == user_id)
                       .values(role=role))


async def remove_membership(conn: AsyncConnection, org_id: str, user_id: str) -> None:
    await conn.execute(delete(memberships).where(memberships.c.org_id == org_id, memberships.c.user_id == user_id))


async def owners(conn: AsyncConnection, org_id: str) -> int:
    return int((await conn.execute(select(func.count()).where(
        memberships.c.org_id == org_id, memberships.c.role == "owner"))).scalar_one())


async def revoke_keys_of(conn: AsyncConnection, user_id: str, account_id: str, now: float) -> list[str]:
    """Revoke the user's live keys on ``account_id`` (a member leaving an org); returns their ids."""
    ids = [r[0] for r in (await conn.execute(select(api_keys.c.id).where(
        api_keys.c.user_id == user_id, api_keys.c.account_id == account_id, api_keys.c.revoked_at.is_(None)))).all()]
    if ids:
        await conn.execute(update(api_keys).where(api_keys.c.id.in_(ids)).values(revoked_at=now))
    return ids


# ---------------------------------------------------------------- login failures


async def recent_failures(conn: AsyncConnection, email: str, ip: str, since: float) -> list[float]:
    rows = (await conn.execute(select(login_failures.c.created_at).where(
        login_failures.c.email == email, login_failures.c.ip == ip, login_failures.c.created_at > since)
        .order_by(login_failures.c.created_at))).all()
    return [float(r[0]) for r in rows]


async def add_failure(conn: AsyncConnection, email: str, ip: str, now: float, keep_after: float) -> None:
    await conn.execute(delete(login_failures).where(login_failures.c.created_at <= keep_after))
    await conn.execute(insert(login_failures).values(email=email, ip=ip, created_at=now))


async def clear_failures(conn: AsyncConnection, email: str, ip: str) -> None:
    await conn.execute(delete(login_failures).where(login_failures.c.email == email, login_failures.c.ip == ip))


# ---------------------------------------------------------------- invites


async def insert_invite(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(invites).values(**row))


async def invite_by_hash(conn: AsyncConnection, token_hash: str) -> Any:
    return (await conn.execute(
        select(invites, accounts.c.name.label("org")).select_from(invites.join(accounts, accounts.c.id == invites.c.org_id))
        .where(invites.c.token_hash == token_hash))).first()


async def claim_invite(conn: AsyncConnection, invite_id: str, user_id: str, now: float) -> bool:
    """Mark the invite accepted if it still can be; True for the one caller that did."""
    res = await conn.execute(update(invites).where(invites.c.id == invite_id, invites.c.accepted_at.is_(None),
                                                   invites.c.expires_at > now)
                             .values(accepted_at=now, accepted_by=user_id))
    return res.rowcount == 1
