"""The audit log: append-only (the database refuses updates and deletes), newest first."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.store import pages
from bytespike.store.schema import audit_log


async def append(conn: AsyncConnection, actor: str, action: str, target: str, details: dict[str, Any],
                 now: float) -> None:
    await conn.execute(insert(audit_log).values(created_at=now, actor=actor[:320], action=action,
                                                target=target[:320], details=orjson.dumps(details).decode()))


async def entries(conn: AsyncConnection, limit: int, cursor: str | None, *, action: str | None = None,
                  target: str | None = None) -> pages.Page:
    before = pages.decode(cursor, 1)
    q = select(audit_log)
    if before is not None:
        q = q.where(audit_log.c.id < int(before[0]))
    if action:
        q = q.where(audit_log.c.action == action)
    if target:
        q = q.where(audit_log.c.target == target)
    rows = (await conn.execute(q.order_by(audit_log.c.id.desc()).limit(limit + 1))).all()
    items = []
    for r in rows:
        d = dict(r._mapping)
        d["details"] = orjson.loads(d["details"] or "{}")
        items.append(d)
    return pages.page(items, limit, lambda r: [r["id"]])
