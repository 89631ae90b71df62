"""The SQL of queued tasks: submission, leasing, outcomes, webhook deliveries and retention.

Leasing works the same on both databases: one write transaction reads what is running (for the
caps), picks the oldest takeable tasks and flips them to ``running`` under a fresh lease token
with an ``UPDATE ... WHERE`` that re-checks their status. SQLite's write transactions are
exclusive (``BEGIN IMMEDIATE``); on PostgreSQL the pick is ``FOR UPDATE SKIP LOCKED`` and claims
are serialised by a transaction-scoped advisory lock so the caps hold across instances.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.store.accounts import KeyRecord, key_from_row
from bytespike.store.schema import api_keys, task_deliveries, tasks, usage_records, webhook_secrets

FINAL = ("succeeded", "failed", "canceled", "expired")
STATUSES = ("queued", "running", *FINAL)
_CLAIM_LOCK = 0x627974657370696B  # "bytespik": the advisory lock id serialising claims on PostgreSQL


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: str
    account_id: str
    key_id: str
    endpoint: str
    model: str
    request: str
    headers: str | None
    metadata: str | None
    webhook_url: str | None
    idempotency_key: str | None
    request_hash: str
    status: str
    attempts: int
    created_at: float
    not_before: float
    deadline_at: float
    started_at: float | None
    finished_at: float | None
    lease_token: str | None
    lease_expires: float | None
    request_id: str | None
    http_status: int | None
    result: str | None
    error: str | None
    usage: str | None
    cost: int | None
    webhook_state: str | None
    webhook_next_at: float | None
    webhook_attempts: int


def _row(r: Row[Any]) -> TaskRow:
    return TaskRow(**{name: r._mapping[name] for name in TaskRow.__slots__})


def new_task_id() -> str:
    return f"task_{secrets.token_hex(12)}"


def new_lease_token() -> str:
    return secrets.token_hex(16)


# ---------------------------------------------------------------- submission and reading


async def insert_task(conn: AsyncConnection, values: dict[str, Any]) -> TaskRow:
    await conn.execute(insert(tasks).values(**values))
    full: dict[str, Any] = {name: values.get(name) for name in TaskRow.__slots__}
    return TaskRow(**full)


async def by_idempotency_key(conn: AsyncConnection, account_id: str, key: str) -> TaskRow | None:
    r = (await conn.execute(select(tasks).where(tasks.c.account_id == account_id,
                                                tasks.c.idempotency_key == key))).first()
    return _row(r) if r is not None else None


async def get(conn: AsyncConnection, task_id: str, account_id: str | None = None) -> TaskRow | None:
    q = select(tasks).where(tasks.c.id == task_id)
    if account_id is not None:
        q = q.where(tasks.c.account_id == account_id)
    r = (await conn.execute(q)).first()
    return _row(r) if r is not None else None


async def page(conn: AsyncConnection, account_id: str | None, *, status: str | None = None,
               after: TaskRow | None = None, limit: int = 20) -> list[TaskRow]:
    """Newest first; ``after`` is the last task of the previous page. Returns up to ``limit + 1`` rows
    (the extra one says there is more)."""
    q = select(tasks)
    if account_id is not None:
        q = q.where(tasks.c.account_id == account_id)
    if status is not None:
        q = q.where(tasks.c.status == status)
    if after is not None:
        q = q.where(or_(tasks.c.created_at < after.created_at,
                        and_(tasks.c.created_at == after.created_at, tasks.c.id < after.id)))
    q = q.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit + 1)
    return [_row(r) for r in (await conn.execute(q)).all()]


async def deliveries(conn: AsyncConnection, task_id: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = (await conn.execute(
        select(task_deliveries).where(task_deliveries.c.task_id == task_id)
        .order_by(task_deliveries.c.id.desc()).limit(limit))).all()
    return [dict(r._mapping) for r in reversed(rows)]


async def billed(conn: AsyncConnection, request_id: str) -> tuple[int, dict[str, int]] | None:
    """The cost and tokens of a request's usage record, if it has been written."""
    u = usage_records.c
    r = (await conn.execute(select(u.cost, u.input_tokens, u.output_tokens, u.cache_read_tokens,
                                   u.cache_write_5m_tokens, u.cache_write_1h_tokens)
                            .where(u.request_id == request_id))).first()
    if r is None:
        return None
    return int(r[0]), {"input_tokens": int(r[1]), "output_tokens": int(r[2]), "cache_read_input_tokens": int(r[3]),
                       "cache_creation_input_tokens": int(r[4]) + int(r[5])}


# ---------------------------------------------------------------- cancel and expiry


async def cancel(conn: AsyncConnection, task_id: str, account_id: str | None, now: float) -> TaskRow | None:
    """A queued or running task becomes ``canceled`` at once (a running one's worker sees it and
    stops its request, unbilled); a finished one, or one whose answer has already arrived (it is
    being settled), is left as it is. None: no such task."""
    q = (update(tasks).where(tasks.c.id == task_id, tasks.c.status.in_(("queued", "running")),
                             tasks.c.result.is_(None))
         .values(status="canceled", finished_at=now, lease_token=None, lease_expires=None,
                 webhook_state=_webhook_pending(), webhook_next_at=now))
    if account_id is not None:
        q = q.where(tasks.c.account_id == account_id)
    await conn.execute(q)
    return await get(conn, task_id, account_id)


def _webhook_pending() -> Any:
    """``pending`` where the task has a webhook, else nothing to deliver."""
    from sqlalchemy import case

    return case((tasks.c.webhook_url.is_not(None), "pending"), else_=None)


async def expire_overdue(conn: AsyncConnection, now: float, endpoint: str, error: str) -> int:
    """Queued tasks of ``endpoint`` whose deadline has passed end ``expired`` with ``error``."""
    res = await conn.execute(
        update(tasks).where(tasks.c.status == "queued", tasks.c.deadline_at <= now, tasks.c.endpoint == endpoint)
        .values(status="expired", finished_at=now, error=error, webhook_state=_webhook_pending(),
                webhook_next_at=now))
    return res.rowcount or 0


# ---------------------------------------------------------------- leasing


async def claim(conn: AsyncConnection, now: float, *, limit: int, lease_seconds: float, total_cap: int,
                per_account: int, skip_accounts: Sequence[str] = (), skip_keys: Sequence[str] = ()
                ) -> list[TaskRow]:
    """Lease up to ``limit`` tasks (oldest first): queued ones that are due, and running ones whose
    lease expired (their process died). Respects the global and per-account running caps; the
    accounts and keys to skip are those admission just refused (an empty wallet, a full window)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CLAIM_LOCK})
    live = and_(tasks.c.status == "running", tasks.c.lease_expires > now)
    counts = {r[0]: int(r[1]) for r in (await conn.execute(
        select(tasks.c.account_id, func.count()).where(live).group_by(tasks.c.account_id))).all()}
    room = min(limit, total_cap - sum(counts.values()))
    if room <= 0:
        return []
    takeable = or_(and_(tasks.c.status == "queued", tasks.c.not_before <= now),
                   and_(tasks.c.status == "running", tasks.c.lease_expires <= now))
    full = [*(a for a, n in counts.items() if n >= per_account), *skip_accounts]
    q = select(tasks.c.id, tasks.c.account_id).where(takeable)
    if full:
        q = q.where(tasks.c.account_id.not_in(full))
    if skip_keys:
        q = q.where(tasks.c.key_id.not_in(list(skip_keys)))
    q = q.order_by(tasks.c.not_before, tasks.c.created_at).limit(max(room * 4, 64)).with_for_update(skip_locked=True)
    chosen: list[str] = []
    for task_id, account_id in (await conn.execute(q)).all():
        if len(chosen) >= room:
            break
        if counts.get(account_id, 0) >= per_account:
            continue
        counts[account_id] = counts.get(account_id, 0) + 1
        chosen.append(task_id)
    if not chosen:
        return []
    token = new_lease_token()
    await conn.execute(
        update(tasks).where(tasks.c.id.in_(chosen), takeable)
        .values(status="running", lease_token=token, lease_expires=now + lease_seconds,
                attempts=tasks.c.attempts + 1, started_at=func.coalesce(tasks.c.started_at, now)))
    rows = (await conn.execute(select(tasks).where(tasks.c.lease_token == token))).all()
    return [_row(r) for r in rows]


async def renew(conn: AsyncConnection, leases: Sequence[tuple[str, str]], until: float) -> set[str]:
    """Extend the given (task id, token) leases; returns the ids no longer held (canceled, or taken
    over after a lapse)."""
    lost: set[str] = set()
    for task_id, token in leases:
        res = await conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.lease_token == token,
                                                     tasks.c.status == "running")
                                 .values(lease_expires=until))
        if not res.rowcount:
            lost.add(task_id)
    return lost


def _held(task_id: str, token: str) -> Any:
    return and_(tasks.c.id == task_id, tasks.c.lease_token == token, tasks.c.status == "running")


async def store_answer(conn: AsyncConnection, task_id: str, token: str, *, request_id: str, http_status: int,
                       result: str) -> bool:
    """Keep the answer the moment it arrives, before it is settled: a task whose process dies now is
    finished from this row on restart instead of being sent upstream again."""
    res = await conn.execute(update(tasks).where(_held(task_id, token))
                             .values(request_id=request_id, http_status=http_status, result=result))
    return bool(res.rowcount)


async def finish(conn: AsyncConnection, task_id: str, token: str, status: str, now: float, **values: Any) -> bool:
    res = await conn.execute(
        update(tasks).where(_held(task_id, token))
        .values(status=status, finished_at=now, lease_token=None, lease_expires=None,
                webhook_state=_webhook_pending(), webhook_next_at=now, **values))
    return bool(res.rowcount)


async def requeue(conn: AsyncConnection, task_id: str, token: str, not_before: float, *, counted: bool,
                  **values: Any) -> bool:
    """Back to ``queued`` until ``not_before``; ``counted=False`` gives the attempt back (it never
    reached an upstream: admission refused it)."""
    attempts = tasks.c.attempts if counted else tasks.c.attempts - 1
    res = await conn.execute(
        update(tasks).where(_held(task_id, token))
        .values(status="queued", not_before=not_before, lease_token=None, lease_expires=None, attempts=attempts,
                **values))
    return bool(res.rowcount)


async def release_all_running(conn: AsyncConnection) -> int:
    """Every running task back to the queue: at the start of the only process on its database,
    whatever was running belonged to a process that is gone."""
    res = await conn.execute(update(tasks).where(tasks.c.status == "running")
                             .values(lease_expires=0.0))
    return res.rowcount or 0


# ---------------------------------------------------------------- webhooks


async def due_webhooks(conn: AsyncConnection, now: float, limit: int, lease_seconds: float) -> list[TaskRow]:
    """Webhooks due now, taken for ``lease_seconds`` (another process will not send them meanwhile)."""
    q = (select(tasks.c.id).where(tasks.c.webhook_state == "pending", tasks.c.webhook_next_at <= now)
         .order_by(tasks.c.webhook_next_at).limit(limit).with_for_update(skip_locked=True))
    ids = [r[0] for r in (await conn.execute(q)).all()]
    if not ids:
        return []
    await conn.execute(update(tasks).where(tasks.c.id.in_(ids), tasks.c.webhook_state == "pending",
                                           tasks.c.webhook_next_at <= now)
                       .values(webhook_next_at=now + lease_seconds, webhook_attempts=tasks.c.webhook_attempts + 1))
    rows = (await conn.execute(select(tasks).where(tasks.c.id.in_(ids)))).all()
    return [_row(r) for r in rows]


async def record_delivery(conn: AsyncConnection, task_id: str, attempt: int, at: float, *, status_code: int | None,
                          error: str | None, duration_ms: float, state: str, next_at: float | None) -> None:
    await conn.execute(insert(task_deliveries).values(task_id=task_id, attempt=attempt, at=at,
                                                      status_code=status_code, error=error, duration_ms=duration_ms))
    await conn.execute(update(tasks).where(tasks.c.id == task_id)
                       .values(webhook_state=state, webhook_next_at=next_at))


# ---------------------------------------------------------------- retention


async def purge(conn: AsyncConnection, finished_before: float) -> int:
    """Delete finished tasks (and their delivery logs) that finished before the given time."""
    old = select(tasks.c.id).where(tasks.c.status.in_(FINAL), tasks.c.finished_at < finished_before)
    await conn.execute(delete(task_deliveries).where(task_deliveries.c.task_id.in_(old)))
    res = await conn.execute(delete(tasks).where(tasks.c.status.in_(FINAL), tasks.c.finished_at < finished_before))
    return res.rowcount or 0


# ---------------------------------------------------------------- webhook secrets


async def webhook_secret(conn: AsyncConnection, account_id: str, now: float, *, rotate: bool = False) -> str:
    """The account's signing secret, made on first use; ``rotate`` replaces it."""
    row = (await conn.execute(select(webhook_secrets.c.secret)
                              .where(webhook_secrets.c.account_id == account_id))).first()
    if row is not None and not rotate:
        return str(row[0])
    secret = "whsec_" + secrets.token_urlsafe(32)
    if row is None:
        await conn.execute(insert(webhook_secrets).values(account_id=account_id, secret=secret, created_at=now))
    else:
        await conn.execute(update(webhook_secrets).where(webhook_secrets.c.account_id == account_id)
                           .values(secret=secret, created_at=now))
    return secret


async def read_webhook_secret(conn: AsyncConnection, account_id: str) -> str | None:
    row = (await conn.execute(select(webhook_secrets.c.secret)
                              .where(webhook_secrets.c.account_id == account_id))).first()
    return str(row[0]) if row is not None else None


async def keys_by_id(conn: AsyncConnection, key_ids: Sequence[str]) -> dict[str, KeyRecord]:
    """The keys tasks were submitted with, read again when they run (one may have been revoked since)."""
    rows = (await conn.execute(select(api_keys).where(api_keys.c.id.in_(list(set(key_ids)))))).all()
    return {r.id: key_from_row(r) for r in rows}
