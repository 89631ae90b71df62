"""The SQL of money: balances, open holds, and the batched write of holds and settlements.

A settlement is the charge (a ledger entry, idempotent on the request id), the release of its
hold and its usage record. A batch of them is written in one transaction, so each one is atomic
and the writer pays for one commit per batch, not per request.

Each ledger entry carries the balance after it, so whoever appends reads the last one first. On
PostgreSQL two instances doing that at once would both read the same balance and one charge would
be lost; so every writer of an account's ledger or holds first locks the account's row
(``SELECT ... FOR UPDATE``, see :func:`lock_accounts`), the same lock admission takes. Row locks,
not serializable retries: a charge is written once, never re-run, and the wait is one short
transaction. On SQLite every write transaction already holds the database's write lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.store.schema import accounts, holds, ledger, usage_records


@dataclass(slots=True)
class HoldRow:
    id: str
    account_id: str
    key_id: str | None
    amount: int
    created_at: float
    expires_at: float
    due: float = 0.0  # monotonic time before which it is not written


@dataclass(slots=True)
class Settlement:
    request_id: str
    account_id: str | None
    key_id: str | None
    charge: int
    note: str
    had_hold: bool
    record: dict[str, Any] = field(default_factory=dict)
    due: float = 0.0  # monotonic time before which it is not written (tests widen the gap this way)


async def lock_accounts(conn: AsyncConnection, account_ids: Iterable[str]) -> None:
    """Lock the accounts' rows until the transaction ends (PostgreSQL; a no-op on SQLite, whose
    write transactions are already exclusive). Sorted, so two writers never deadlock."""
    ids = sorted(set(account_ids))
    if ids and conn.dialect.name != "sqlite":
        await conn.execute(select(accounts.c.id).where(accounts.c.id.in_(ids)).order_by(accounts.c.id)
                           .with_for_update())


async def balance(conn: AsyncConnection, account_id: str) -> int:
    row = (await conn.execute(
        select(ledger.c.balance_after).where(ledger.c.account_id == account_id).order_by(ledger.c.id.desc()).limit(1)
    )).first()
    return int(row[0]) if row is not None else 0


async def open_holds(conn: AsyncConnection, account_id: str, now: float) -> list[tuple[float, int]]:
    """(expires_at, amount) of the account's unexpired holds."""
    rows = (await conn.execute(
        select(holds.c.expires_at, holds.c.amount).where(holds.c.account_id == account_id, holds.c.expires_at > now)
    )).all()
    return [(float(r[0]), int(r[1])) for r in rows]


async def held(conn: AsyncConnection, account_id: str, now: float) -> int:
    return int((await conn.execute(
        select(func.coalesce(func.sum(holds.c.amount), 0))
        .where(holds.c.account_id == account_id, holds.c.expires_at > now)
    )).scalar_one())


async def key_usage(conn: AsyncConnection, key_id: str, since: float) -> list[tuple[str, float, int, int]]:
    """(request id, time, cost, tokens) of the key's requests after ``since`` that count in its windows
    (failures too: they count as requests, at no cost), oldest first."""
    u = usage_records.c
    tokens = u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_5m_tokens + u.cache_write_1h_tokens
    rows = (await conn.execute(
        select(u.request_id, u.created_at, u.cost, tokens)
        .where(u.key_id == key_id, u.created_at > since,
               u.status.in_(("succeeded", "client_disconnected", "failed", "interrupted")))
        .order_by(u.created_at)
    )).all()
    return [(str(r[0]), float(r[1]), int(r[2]), int(r[3])) for r in rows]


async def key_holds(conn: AsyncConnection, key_id: str, now: float) -> list[tuple[str, float, int]]:
    """(request id, expires_at, amount) of the key's unexpired holds: its requests in flight."""
    rows = (await conn.execute(
        select(holds.c.id, holds.c.expires_at, holds.c.amount).where(holds.c.key_id == key_id, holds.c.expires_at > now)
    )).all()
    return [(str(r[0]), float(r[1]), int(r[2])) for r in rows]


async def insert_holds(conn: AsyncConnection, rows: Sequence[HoldRow]) -> None:
    if rows:
        await conn.execute(insert(holds), [
            {"id": r.id, "account_id": r.account_id, "key_id": r.key_id, "amount": r.amount,
             "created_at": r.created_at, "expires_at": r.expires_at} for r in rows])


async def delete_expired_holds(conn: AsyncConnection, now: float) -> int:
    res = await conn.execute(delete(holds).where(holds.c.expires_at <= now))
    return res.rowcount or 0


async def interrupt_holds(conn: AsyncConnection, now: float) -> list[HoldRow]:
    """Every open hold, deleted, each with an ``interrupted`` usage record (nothing charged).

    Only for a process that knows every hold in the database was left by a gateway that died
    (it owns the SQLite file): those requests' outcome is unknown and their money is freed at once.
    """
    rows = (await conn.execute(select(holds.c.id, holds.c.account_id, holds.c.key_id, holds.c.amount,
                                      holds.c.created_at, holds.c.expires_at))).all()
    if not rows:
        return []
    left = [HoldRow(str(r[0]), str(r[1]), r[2], int(r[3]), float(r[4]), float(r[5])) for r in rows]
    ids = [h.id for h in left]
    recorded: set[str] = set()
    for chunk in _chunks(ids, 500):
        recorded |= {r[0] for r in (await conn.execute(
            select(usage_records.c.request_id).where(usage_records.c.request_id.in_(chunk)))).all()}
    await _insert_many(conn, "usage_records", _USAGE_COLUMNS, [{
        "request_id": h.id, "created_at": h.created_at, "account_id": h.account_id, "key_id": h.key_id,
        "protocol": "unknown", "model_asked": "", "model_used": None, "provider": None, "upstream_model": None,
        "stream": False, "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
        "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0, "cost": 0, "status": "interrupted",
        "http_status": 0, "error_type": "gateway_stopped", "latency_ms": (now - h.created_at) * 1000,
        "ttft_ms": None} for h in left if h.id not in recorded])
    for chunk in _chunks(ids, 500):
        await conn.execute(delete(holds).where(holds.c.id.in_(chunk)))
    return left


async def write_settlements(conn: AsyncConnection, items: Sequence[Settlement], now: float) -> None:
    """Charges, hold releases and usage records of ``items``, in the caller's write transaction.

    The accounts' rows are locked first, then balances are read once per account and carried
    forward entry by entry; a request id already in the ledger is never charged again.
    """
    if not items:
        return
    await lock_accounts(conn, [s.account_id for s in items if s.account_id and (s.charge or s.had_hold)])
    charged = [s for s in items if s.charge and s.account_id]
    if charged:
        ids = [s.request_id for s in charged]
        seen = {r[0] for r in (await conn.execute(
            select(ledger.c.request_id).where(ledger.c.request_id.in_(ids)))).all()}
        running: dict[str, int] = {}
        entries = []
        for s in charged:
            if s.request_id in seen:
                continue
            assert s.account_id is not None
            if s.account_id not in running:
                running[s.account_id] = await balance(conn, s.account_id)
            running[s.account_id] -= s.charge
            entries.append({"account_id": s.account_id, "kind": "charge", "amount": -s.charge,
                            "balance_after": running[s.account_id], "request_id": s.request_id,
                            "key_id": s.key_id, "note": s.note, "created_at": now})
        if entries:
            await _insert_many(conn, "ledger", _LEDGER_COLUMNS, entries)
    released = [s.request_id for s in items if s.had_hold]
    for chunk in _chunks(released, 500):
        await conn.execute(delete(holds).where(holds.c.id.in_(chunk)))
    await _insert_many(conn, "usage_records", _USAGE_COLUMNS, [s.record for s in items])


_LEDGER_COLUMNS = ("account_id", "kind", "amount", "balance_after", "request_id", "key_id", "note", "created_at")
_USAGE_COLUMNS = tuple(c.name for c in usage_records.columns if c.name != "id")
_STATEMENTS: dict[tuple[str, str, tuple[str, ...]], str] = {}


async def _insert_many(conn: AsyncConnection, table: str, columns: tuple[str, ...], rows: Sequence[dict[str, Any]]
                       ) -> None:
    """One driver-level executemany: the writer's rows skip SQLAlchemy's per-row statement building."""
    style = conn.dialect.paramstyle
    key = (style, table, columns)
    sql = _STATEMENTS.get(key)
    if sql is None:
        if style == "qmark":
            marks = ", ".join("?" for _ in columns)
        elif style == "numeric_dollar":
            marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        elif style == "numeric":
            marks = ", ".join(f":{i}" for i in range(1, len(columns) + 1))
        else:
            marks = ", ".join("%s" for _ in columns)
        sql = _STATEMENTS[key] = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
    await conn.exec_driver_sql(sql, [tuple(r.get(c) for c in columns) for r in rows])


def _chunks(seq: Sequence[str], n: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
