"""Limits decided in the database: for several gateway processes without Redis.

``serve --workers N`` on SQLite, or instances on PostgreSQL without Redis, cannot keep windows in
memory: each process would count only its own requests. Here a key's windows are rebuilt inside
the wallet's hold transaction from what the database holds: the key's billed usage records and
its open holds (its requests in flight, wherever they run). That transaction is exclusive per
account (SQLite's write lock, PostgreSQL's account row lock), and a key belongs to one account,
so two admissions of one key never decide on the same numbers.

A request that finished but whose settlement is not written yet still has its hold row, so it
counts as in flight (its hold, not its charge) for those few milliseconds: the caps can only be
stricter than exact, never looser.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.billing import limits as lim
from bytespike.store import ledger as books


async def key_windows(conn: AsyncConnection, key_id: str, specs: Sequence[lim.WindowSpec],
                      max_concurrency: int | None, now: float) -> lim.KeyWindows:
    """The key's windows as the database shows them at ``now``, with its open holds in flight."""
    kw = lim.KeyWindows(specs, max_concurrency)
    longest = max((s.seconds for s in specs), default=0)
    kw.load([lim.UsageEvent(t, cost, tokens) for _, t, cost, tokens in await books.key_usage(conn, key_id, now - longest)],
            now)
    for _, _, amount in await books.key_holds(conn, key_id, now):
        kw.hold_open(amount)
    return kw
