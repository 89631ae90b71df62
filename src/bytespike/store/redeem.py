"""Redeem codes: stored as hashes; a claim is one conditional update, so a code pays out once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.store import pages
from bytespike.store.schema import redeem_codes


async def insert_codes(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(redeem_codes), rows)


def _public(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    d.pop("code_hash", None)
    return d


async def list_codes(conn: AsyncConnection, limit: int, cursor: str | None) -> pages.Page:
    after = pages.decode(cursor, 2)
    q = select(redeem_codes)
    if after is not None:
        q = q.where(or_(redeem_codes.c.created_at > after[0],
                        and_(redeem_codes.c.created_at == after[0], redeem_codes.c.id > after[1])))
    rows = (await conn.execute(q.order_by(redeem_codes.c.created_at, redeem_codes.c.id).limit(limit + 1))).all()
    return pages.page([_public(r) for r in rows], limit, lambda r: [r["created_at"], r["id"]])


async def by_hash(conn: AsyncConnection, code_hash: str) -> Any:
    return (await conn.execute(select(redeem_codes).where(redeem_codes.c.code_hash == code_hash))).first()


async def claim(conn: AsyncConnection, code_id: str, account_id: str, now: float) -> bool:
    """Mark the code redeemed by ``account_id`` if it still can be; True for the one caller that did."""
    res = await conn.execute(
        update(redeem_codes)
        .where(redeem_codes.c.id == code_id, redeem_codes.c.redeemed_at.is_(None),
               or_(redeem_codes.c.expires_at.is_(None), redeem_codes.c.expires_at > now))
        .values(redeemed_at=now, redeemed_by=account_id))
    return res.rowcount == 1
