"""Wallet admission: is there money for this request's hold?

Two ways, one answer. When this process is the only gateway on its database (SQLite, one
worker: the embedded default) it knows every hold and every charge, so it decides in memory and
the hold rows are written behind, in batches. Otherwise (PostgreSQL, several workers or
instances) each hold is placed in a write transaction that checks the balance less every open
hold in the database. Either way no account is ever overdrawn, however many requests run at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO

from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.billing import money
from bytespike.errors import GatewayError
from bytespike.store import ledger as books
from bytespike.store.db import Database


@dataclass(frozen=True, slots=True)
class Need:
    """What a request would hold, and how to shrink it: ``fit(available, ceiling)`` gives the
    max_tokens up to ``ceiling`` the money covers (None: not even a useful answer) and
    ``amount(max_tokens)`` its hold."""

    hold: int
    max_tokens: int
    requested: int
    fit: Callable[[int, int], int | None]
    amount: Callable[[int], int]


def need(input_estimate: int, max_tokens: int, requested: int, price: money.Price, mult: Decimal) -> Need:
    return Need(
        hold=money.hold_amount(input_estimate, max_tokens, price, mult),
        max_tokens=max_tokens,
        requested=requested,
        fit=lambda available, ceiling: money.affordable_max_tokens(available, input_estimate, price, mult, ceiling),
        amount=lambda n: money.hold_amount(input_estimate, n, price, mult),
    )


def insufficient(hold: int, available: int) -> GatewayError:
    return GatewayError(
        "billing_error",
        f"insufficient balance: this request needs up to {money.format_usd(hold)} USD held and the wallet has "
        f"{money.format_usd(max(available, 0))} USD available",
        headers={"x-should-retry": "false"},
    )


def _shrink(n: Need, available: int) -> tuple[int, int | None]:
    """(hold, lowered max_tokens or None) for what ``available`` covers; raises 402 below a useful answer."""
    if n.hold <= available:
        return n.hold, (n.max_tokens if n.max_tokens < n.requested else None)
    fitted = n.fit(max(available, 0), n.max_tokens)
    if fitted is None:
        raise insufficient(n.hold, available)
    return n.amount(fitted), (fitted if fitted < n.requested else None)


# ---------------------------------------------------------------- shared: the database decides


Gate = Callable[[AsyncConnection, Need], Awaitable[Need]]
"""Run inside the hold's transaction before the balance is read: may lower the need, or refuse."""


class SharedWallets:
    local = False

    def __init__(self, db: Database) -> None:
        self.db = db
        self.settling = asyncio.Lock()  # held by the writer around each batch (see LocalWallets)

    async def reserve(self, request_id: str, account_id: str, key_id: str, n: Need, now: float,
                      expires_at: float, gate: Gate | None = None) -> tuple[int, int | None]:
        async with self.db.write() as conn:
            await books.lock_accounts(conn, [account_id])
            if gate is not None:
                n = await gate(conn, n)
            available = await books.balance(conn, account_id) - await books.held(conn, account_id, now)
            hold, lowered = _shrink(n, available)
            await books.insert_holds(conn, [books.HoldRow(request_id, account_id, key_id, hold, now, expires_at)])
        return hold, lowered

    def settled(self, account_id: str | None, hold: int, charge: int) -> None:
        """Nothing to do: the settlement's transaction releases the hold row."""

    def written(self, account_id: str | None, charge: int) -> None:
        """Nothing to do."""


# ---------------------------------------------------------------- local: this process decides


@dataclass(slots=True)
class _Account:
    db_balance: int  # the ledger's balance when last read, less charges written since
    pending: int = 0  # charges settled here and not yet written
    held: int = 0  # this process's open holds
    orphans: list[tuple[float, int]] = field(default_factory=list)  # (expires_at, amount) left by a crash

    def available(self, now: float) -> int:
        if self.orphans and self.orphans[0][0] <= now:
            self.orphans = [o for o in self.orphans if o[0] > now]
        return self.db_balance - self.pending - self.held - sum(a for _, a in self.orphans)


class LocalWallets:
    local = True

    def __init__(self, db: Database, write_hold: Callable[[books.HoldRow], None], row_delay: float = 0.0) -> None:
        self.db = db
        self.row_delay = row_delay
        self._write_hold = write_hold
        self._accounts: dict[str, _Account] = {}
        self._loading: dict[str, asyncio.Future[_Account]] = {}
        # The writer holds this from a batch's commit until its charges leave ``pending``; a
        # refresh waits for it, or it would count those charges twice (in the ledger and pending).
        self.settling = asyncio.Lock()

    async def _account(self, account_id: str, now: float) -> _Account:
        acct = self._accounts.get(account_id)
        if acct is not None:
            return acct
        loading = self._loading.get(account_id)
        if loading is not None:
            return await loading
        fut: asyncio.Future[_Account] = asyncio.get_running_loop().create_future()
        self._loading[account_id] = fut
        try:
            async with self.db.read() as conn:
                acct = _Account(await books.balance(conn, account_id),
                                orphans=sorted(await books.open_holds(conn, account_id, now)))
            self._accounts[account_id] = acct
            fut.set_result(acct)
            return acct
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._loading.pop(account_id, None)

    async def _refresh(self, account_id: str, acct: _Account) -> None:
        """Top-ups come from other processes: read the balance again before refusing."""
        async with self.settling, self.db.read() as conn:
            acct.db_balance = await books.balance(conn, account_id)

    async def reserve(self, request_id: str, account_id: str, key_id: str, n: Need, now: float,
                      expires_at: float) -> tuple[int, int | None]:
        acct = await self._account(account_id, now)
        if n.hold > acct.available(now):
            await self._refresh(account_id, acct)
        hold, lowered = _shrink(n, acct.available(now))
        acct.held += hold
        self._write_hold(books.HoldRow(request_id, account_id, key_id, hold, now, expires_at,
                                       due=time.monotonic() + self.row_delay))
        return hold, lowered

    async def view(self, account_id: str, now: float) -> tuple[int, int] | None:
        """(balance, held) including what is not written yet; None if this account is not loaded."""
        acct = self._accounts.get(account_id)
        if acct is None:
            return None
        await self._refresh(account_id, acct)
        acct.available(now)  # drops expired orphans
        return acct.db_balance - acct.pending, acct.held + sum(a for _, a in acct.orphans)

    def settled(self, account_id: str | None, hold: int, charge: int) -> None:
        acct = self._accounts.get(account_id or "")
        if acct is not None:
            acct.held -= hold
            acct.pending += charge

    def written(self, account_id: str | None, charge: int) -> None:
        acct = self._accounts.get(account_id or "")
        if acct is not None:
            acct.pending -= charge
            acct.db_balance -= charge

    def forget_idle(self) -> None:
        """Drop accounts with nothing open, so a long-running process does not grow (reloaded on use)."""
        for aid in [a for a, s in self._accounts.items() if not s.held and not s.pending and not s.orphans]:
            del self._accounts[aid]


class DatabaseInUse(RuntimeError):
    """Another gateway process already serves this SQLite database on its own."""


def own_sqlite(path: str) -> IO[str] | None:
    """Take the lock that makes this process the only gateway on the SQLite file at ``path``.

    Returns the open lock file (keep it open while serving) or raises DatabaseInUse.
    """
    fd = os.open(f"{path}.gateway-lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    lock = open(fd, "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DatabaseInUse(
            f"another ByteSpike process is serving the SQLite database {path}; stop it, or run one process "
            "with --workers N, or use PostgreSQL for several instances") from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock
