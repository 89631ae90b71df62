"""Reading usage records back: spend grouped the ways the views show it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.store.schema import usage_records


async def by_session(conn: AsyncConnection, account_id: str, since: float) -> list[dict[str, Any]]:
    """Requests, tokens and cost per Claude Code session (and the agents seen in it), newest first."""
    u = usage_records.c
    rows = (await conn.execute(
        select(u.session_id, func.count(), func.count(func.distinct(u.agent_id)), func.sum(u.input_tokens),
               func.sum(u.output_tokens), func.sum(u.cache_read_tokens), func.sum(u.cost), func.min(u.created_at),
               func.max(u.created_at))
        .where(u.account_id == account_id, u.created_at >= since, u.session_id.is_not(None))
        .group_by(u.session_id).order_by(func.max(u.created_at).desc())
    )).all()
    return [{"session_id": r[0], "requests": int(r[1]), "agents": int(r[2] or 0), "input_tokens": int(r[3] or 0),
             "output_tokens": int(r[4] or 0), "cache_read_tokens": int(r[5] or 0), "cost": int(r[6] or 0),
             "first_at": float(r[7]), "last_at": float(r[8])} for r in rows]
