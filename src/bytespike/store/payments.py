"""Card payments: checkout sessions and the provider events that pay them, each handled once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.store.schema import payment_events, payments


async def insert_payment(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(payments).values(**row))


async def by_session(conn: AsyncConnection, session_id: str) -> Any:
    return (await conn.execute(select(payments).where(payments.c.session_id == session_id))).first()


async def first_delivery(conn: AsyncConnection, event_id: str, type_: str, now: float) -> bool:
    """Record the event; False when it was recorded before (a replay or a second delivery)."""
    if (await conn.execute(select(payment_events.c.event_id).where(payment_events.c.event_id == event_id))).first():
        return False
    try:
        async with conn.begin_nested():
            await conn.execute(insert(payment_events).values(event_id=event_id, type=type_, received_at=now))
    except IntegrityError:
        return False
    return True


async def mark_paid(conn: AsyncConnection, session_id: str, event_id: str, now: float) -> bool:
    """Open -> paid, once; True for the one caller that made the change."""
    res = await conn.execute(update(payments).where(payments.c.session_id == session_id, payments.c.status == "open")
                             .values(status="paid", paid_at=now, event_id=event_id))
    return res.rowcount == 1


async def for_account(conn: AsyncConnection, account_id: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(payments).where(payments.c.account_id == account_id)
                               .order_by(payments.c.created_at.desc()).limit(limit))).all()
    return [dict(r._mapping) for r in rows]
