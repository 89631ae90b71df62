"""Every account action leaves an audit entry (who, what, on what, when), written in the
action's own transaction so there is never one without the other."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.accounts.errors import Actor, Forbidden
from bytespike.store import audit as entries
from bytespike.store import pages
from bytespike.store.db import Database


async def record(conn: AsyncConnection, actor: Actor, action: str, target: str, **details: Any) -> None:
    await entries.append(conn, actor.name, action, target, details, time.time())


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def page(self, actor: Actor, limit: int = pages.DEFAULT_LIMIT, cursor: str | None = None, *,
                   action: str | None = None, target: str | None = None) -> pages.Page:
        """Newest first; operators only."""
        if not actor.is_operator:
            raise Forbidden("the audit log is for operators")
        async with self.db.read() as conn:
            return await entries.entries(conn, limit, cursor, action=action, target=target)
