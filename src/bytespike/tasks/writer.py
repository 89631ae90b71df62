"""One writer for the workers' row updates: whatever is waiting goes in one transaction.

Each run writes its answer and its outcome; with many tasks running at once, one commit per batch
instead of per update keeps the queue moving on SQLite's single write lock. Callers still await
their own update (an answer is durable before it is settled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

Update = Callable[..., Awaitable[Any]]


class BatchWriter:
    def __init__(self, transaction: Callable[[], Any]) -> None:
        self._transaction = transaction
        self._pending: list[tuple[Update, tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    async def run(self, fn: Update, *args: Any, **kw: Any) -> Any:
        """``await fn(conn, *args, **kw)`` in the next batch; its result."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, kw, fut))
        self._wake.set()
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._write_loop())
        return await fut

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            try:
                await self._loop
            except asyncio.CancelledError:
                pass

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                async with self._transaction() as conn:
                    results = [await fn(conn, *args, **kw) for fn, args, kw, _ in batch]
            except (SQLAlchemyError, OSError) as exc:  # each caller gets the failure of its batch
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (*_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
