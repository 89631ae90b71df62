"""SQL for device sign-in: pending device grants and rotating refresh tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.store.schema import device_grants, refresh_tokens, users


async def add_grant(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(device_grants).values(**row))


async def grant_by_device(conn: AsyncConnection, device_hash: str) -> Any:
    return (await conn.execute(select(device_grants).where(device_grants.c.device_hash == device_hash))).first()


async def grant_by_user_code(conn: AsyncConnection, user_code: str) -> Any:
    return (await conn.execute(select(device_grants).where(device_grants.c.user_code == user_code))).first()


async def update_grant(conn: AsyncConnection, device_hash: str, expect_status: str, **values: Any) -> bool:
    """Change a grant only if it is still in ``expect_status``: approvals and exchanges happen once."""
    res = await conn.execute(update(device_grants).where(device_grants.c.device_hash == device_hash,
                                                         device_grants.c.status == expect_status).values(**values))
    return bool(res.rowcount)


async def touch_poll(conn: AsyncConnection, device_hash: str, now: float) -> None:
    await conn.execute(update(device_grants).where(device_grants.c.device_hash == device_hash)
                       .values(last_poll_at=now))


async def add_refresh(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(refresh_tokens).values(**row))


async def refresh_by_hash(conn: AsyncConnection, token_hash: str) -> Any:
    return (await conn.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash))).first()


async def use_refresh(conn: AsyncConnection, token_hash: str, now: float) -> bool:
    """Mark a refresh token used, once: a second use of the same token finds it used."""
    res = await conn.execute(update(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash,
                                                          refresh_tokens.c.used_at.is_(None),
                                                          refresh_tokens.c.revoked_at.is_(None))
                             .values(used_at=now))
    return bool(res.rowcount)


async def revoke_family(conn: AsyncConnection, family: str, now: float) -> list[str]:
    """Revoke every token of one sign-in; returns the access keys issued with them."""
    keys = [r[0] for r in (await conn.execute(select(refresh_tokens.c.key_id)
                                              .where(refresh_tokens.c.family == family))).all()]
    await conn.execute(update(refresh_tokens).where(refresh_tokens.c.family == family,
                                                    refresh_tokens.c.revoked_at.is_(None)).values(revoked_at=now))
    return keys


async def revoke_user(conn: AsyncConnection, user_id: str, now: float) -> list[str]:
    """Revoke every sign-in of a person; returns the access keys issued to them this way."""
    keys = [r[0] for r in (await conn.execute(select(refresh_tokens.c.key_id)
                                              .where(refresh_tokens.c.user_id == user_id))).all()]
    await conn.execute(update(refresh_tokens).where(refresh_tokens.c.user_id == user_id,
                                                    refresh_tokens.c.revoked_at.is_(None)).values(revoked_at=now))
    return keys


async def user_exists(conn: AsyncConnection, user_id: str) -> bool:
    return (await conn.execute(select(users.c.id).where(users.c.id == user_id))).first() is not None
