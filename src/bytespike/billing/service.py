"""Admission and settlement: limits, the wallet hold, the charge and the usage record.

Admission (before the upstream call) checks the key's rolling windows, then holds the request's
largest possible cost in its wallet (``wallet.py``: in memory when this process owns its SQLite
database, else in a database transaction), so no account is ever overdrawn however many
requests run at once. Where the windows live depends on who else serves the database:

- this process alone (SQLite, one worker): in memory (``limits.py``);
- several processes with Redis: in Redis, shared by every instance (``shared.py``); while Redis
  is unreachable the ``redis_policy`` decides: ``closed`` answers 503 for requests whose limits
  cannot be checked, ``open`` serves them and counts them in Redis once it is back;
- several processes without Redis (``serve --workers N`` on SQLite, or PostgreSQL alone): in the
  database, decided inside the hold's transaction (``recorded.py``).

Settlement (after the answer) is queued to one background writer that writes, in batches, each
request's charge (idempotent on the request id), the release of its hold and its usage record,
each atomically. Failures release the hold and charge nothing. Holds left by a process that died
expire and are deleted at start and by a periodic sweep.

Environment switches, read once when ``Billing`` is built:

- ``BYTESPIKE_HOLD_SECONDS``: how long a hold lives before it expires (default 3600).
- ``BYTESPIKE_BILLING=off``: no holds, limits, charges or usage records. For benchmarking what
  money and limits cost, never for production.
- ``BYTESPIKE_CLOCK_FILE`` (tests only): a file whose content moves billing's clock; a number is
  an offset in seconds added to the real time, ``@T`` freezes the clock at epoch ``T``, an empty
  or missing file is the real time. Unset, the clock is ``time.time`` itself.
- ``BYTESPIKE_SETTLE_DELAY`` (tests only): seconds the writer waits before writing each batch,
  to open the window between an answer and its charge that a crash test needs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from bytespike.billing import features, money, recorded
from bytespike.billing import limits as lim
from bytespike.billing.shared import SharedLimits, SharedView
from bytespike.billing.wallet import LocalWallets, Need, SharedWallets, need
from bytespike.errors import GatewayError
from bytespike.gateway.catalogue import Catalogue, Resolved
from bytespike.store import ledger as books
from bytespike.store.accounts import KeyRecord
from bytespike.store.db import Database
from bytespike.store.redis import Unreachable

log = logging.getLogger("bytespike.billing.service")

HOLD_GRACE_SECONDS = 3600.0
SETTLE_BATCH_SECONDS = 0.05
"""Settlements wait this long so each write transaction carries many (a crash can lose this much)."""
HOLD_ROW_DELAY = 0.25
"""Seconds a request runs before its hold row is written (in-memory wallets only)."""
SWEEP_MAX_INTERVAL = 60.0
"""Expired holds are swept at least this often (more often when holds live shorter)."""


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLIENT_DISCONNECTED = "client_disconnected"
    REFUSED = "refused"


@dataclass(slots=True)
class Ticket:
    request_id: str
    account_id: str
    key_id: str
    hold: int
    price: money.Price
    multiplier: Decimal
    max_tokens: int | None
    windows: lim.KeyWindows | SharedView | None
    window_ticket: lim.Ticket | None
    shared: bool = False  # its slot is in Redis (False: served while Redis was away, or not there)
    input_estimate: int = 0  # the hold's input tokens
    output_cap: int = 0  # the hold's output tokens (max_tokens as admitted)
    premium: features.Premium = features.NONE


class FileClock:
    """The test clock of ``BYTESPIKE_CLOCK_FILE``: real time moved, or frozen, by a file's content."""

    __slots__ = ("path",)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __call__(self) -> float:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return time.time()
        if not text:
            return time.time()
        if text.startswith("@"):
            return float(text[1:])
        return time.time() + float(text)


def billing_enabled(env: Mapping[str, str]) -> bool:
    """False when ``BYTESPIKE_BILLING`` turns money and limits off (benchmarking only)."""
    return env.get("BYTESPIKE_BILLING", "on").strip().lower() not in ("off", "0", "false", "no")


def _env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of seconds") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r}: must not be negative")
    return value


class Settleable(Protocol):
    """What settlement reads of a request (the road's ``Call``), and what it writes back."""

    request_id: str
    key: KeyRecord | None
    resolved: Resolved | None
    ticket: Ticket | None
    provider: str | None
    upstream_model: str | None
    stream: bool
    usage: dict[str, Any] | None
    outcome: Outcome | None
    status: int
    error_type: str | None
    started: float
    first_byte: float | None
    billed: money.Usage | None
    attribution: tuple[str | None, str | None, str | None]
    task_id: str | None  # the queued task this request ran, if any

    @property
    def protocol(self) -> str: ...


class Billing:
    def __init__(self, db: Database, catalogue: Catalogue, default_windows: tuple[str, ...],
                 hold_seconds: float | None = None, clock: Callable[[], float] | None = None,
                 environ: Mapping[str, str] | None = None, local: bool = False,
                 shared: Callable[[float], SharedLimits] | None = None, redis_policy: str = "closed") -> None:
        env = os.environ if environ is None else environ
        self.db = db
        self.catalogue = catalogue
        if clock is None:
            path = env.get("BYTESPIKE_CLOCK_FILE", "").strip()
            clock = FileClock(path) if path else time.time
        self.clock: Callable[[], float] = clock
        self.hold_seconds = hold_seconds if hold_seconds is not None else \
            _env_seconds(env, "BYTESPIKE_HOLD_SECONDS", HOLD_GRACE_SECONDS)
        self.enabled = billing_enabled(env)
        self._settle_delay = _env_seconds(env, "BYTESPIKE_SETTLE_DELAY", 0.0)
        self._sweeper: asyncio.Task[None] | None = None
        self.limits = lim.LimitRegistry()
        self._default_windows = tuple(lim.parse_duration(w) for w in default_windows)
        self._prices: dict[str, money.Price] = {}
        self._specs: dict[tuple[str, ...], tuple[lim.WindowSpec, ...]] = {}
        self._queue: asyncio.Queue[books.HoldRow | books.Settlement] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._outstanding = 0  # queued hold rows and settlements not written (or dropped) yet
        self._draining = False
        self.wallets: LocalWallets | SharedWallets = LocalWallets(db, self._put, HOLD_ROW_DELAY) if local \
            else SharedWallets(db)
        self.shared: SharedLimits | None = shared(self.hold_seconds) if shared is not None else None
        self.redis_policy = redis_policy

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if isinstance(self.wallets, LocalWallets):
            await self.release_dead_holds()
        await self.release_expired_holds()
        self._writer = asyncio.create_task(self._write_loop())
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def stop(self) -> None:
        """Write every queued hold row and settlement, delays or not, before returning."""
        try:
            await asyncio.wait_for(self.flush(), 60)
        except TimeoutError:
            log.error("usage records still unwritten after 60 s at shutdown: %d", self._outstanding)
        for task in (self._writer, self._sweeper):
            if task is not None:
                task.cancel()
        self._writer = self._sweeper = None

    async def flush(self) -> None:
        """Write everything queued now, without waiting for any delay."""
        self._draining = True
        self._wake.set()
        try:
            while self._outstanding > 0 and self._writer is not None and not self._writer.done():
                self._idle.clear()
                try:
                    await asyncio.wait_for(self._idle.wait(), 1.0)
                except TimeoutError:
                    self._wake.set()
        finally:
            self._draining = False

    async def release_dead_holds(self) -> int:
        """At start, when this process owns its SQLite database: every hold in it was left by a
        gateway process that died (the process lock says so), so each is released now and its
        request recorded as ``interrupted``, uncharged (its answer may or may not have gone out)."""
        async with self.db.write() as conn:
            left = await books.interrupt_holds(conn, self.clock())
        if left:
            log.warning("released %d hold(s) (%s USD) of requests a stopped gateway left open; recorded as "
                        "interrupted", len(left), money.format_usd(sum(h.amount for h in left)))
        return len(left)

    async def release_expired_holds(self) -> int:
        """Delete holds past their expiry: left by a process that died before settling them."""
        async with self.db.write() as conn:
            n = await books.delete_expired_holds(conn, self.clock())
        if n:
            log.warning("released %d expired hold(s) left by an unfinished request", n)
        return n

    async def sweep(self) -> int:
        """Release expired holds and forget the windows of keys with nothing open or counted (they
        are rebuilt from the usage records when the key comes back); returns the holds released."""
        released = await self.release_expired_holds()
        self.limits.prune(self.clock())
        if isinstance(self.wallets, LocalWallets):
            self.wallets.forget_idle()
        return released

    async def _sweep_loop(self) -> None:
        interval = min(SWEEP_MAX_INTERVAL, max(self.hold_seconds / 4, 0.25))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except (SQLAlchemyError, OSError):  # a busy or briefly unreachable database: next sweep retries
                log.exception("sweeping expired holds failed")

    # ------------------------------------------------------------ admission

    def price(self, model_id: str) -> money.Price:
        p = self._prices.get(model_id)
        if p is None:
            p = self._prices[model_id] = money.Price.from_config(self.catalogue.models[model_id].price)
        return p

    def _window_specs(self, key: KeyRecord) -> tuple[lim.WindowSpec, ...]:
        specs = self._specs.get(key.limits)
        if specs is None:
            given = [lim.parse_limit_spec(s) for s in key.limits]
            named = {s.seconds for s in given}
            defaults = [lim.WindowSpec(_name(sec), sec, None, None, None) for sec in self._default_windows
                        if sec not in named]
            specs = self._specs[key.limits] = tuple(sorted([*given, *defaults], key=lambda s: s.seconds))
        return specs

    async def windows(self, key: KeyRecord) -> lim.KeyWindows | SharedView:
        """The key's windows as admission sees them (for ``GET /v1/usage``)."""
        if self.shared is not None:
            try:
                return await self.shared.view(key.id, self._window_specs(key), key.max_concurrency, self.clock())
            except Unreachable:
                pass  # report from the database instead
        if not isinstance(self.wallets, LocalWallets):
            async with self.db.read() as conn:
                return await recorded.key_windows(conn, key.id, self._window_specs(key), key.max_concurrency,
                                                  self.clock())
        return await self._local_windows(key)

    async def _local_windows(self, key: KeyRecord) -> lim.KeyWindows:
        kw, created = self.limits.ensure(key.id, self._window_specs(key), key.max_concurrency)
        if created:
            fut = asyncio.get_running_loop().create_future()
            self._loading[key.id] = fut
            try:
                longest = max((s.seconds for s in kw.specs), default=0)
                kw.load(await self._history(key.id, self.clock() - longest), self.clock())
            finally:
                fut.set_result(None)
                self._loading.pop(key.id, None)
        elif key.id in self._loading:
            await self._loading[key.id]
        return kw

    async def recorded_windows(self, key: KeyRecord, now: float | None = None) -> list[lim.WindowState]:
        """The key's windows as its usage records show them, without open holds: for reports made
        outside the gateway process (``bytespike usage``)."""
        at = self.clock() if now is None else now
        kw = lim.KeyWindows(self._window_specs(key), key.max_concurrency)
        kw.load(await self._history(key.id, at - max((s.seconds for s in kw.specs), default=0)), at)
        return kw.snapshot(at)

    async def _history(self, key_id: str, since: float) -> list[lim.UsageEvent]:
        async with self.db.read() as conn:
            rows = await books.key_usage(conn, key_id, since)
        return [lim.UsageEvent(t, cost, tokens) for _, t, cost, tokens in rows]

    async def admit(self, request_id: str, key: KeyRecord, resolved: Resolved, max_tokens: int,
                    input_estimate: int, premium: features.Premium = features.NONE) -> Ticket:
        model_id = resolved.model.id
        price = self.price(model_id)
        mult = self.catalogue.multiplier(key.group) * premium.multiplier
        if not self.enabled:
            return Ticket(request_id, key.account_id, key.id, 0, price, mult, None, None, None)
        billed_estimate = input_estimate
        if premium.tool_uses and price.max_input_rate and mult:
            # The hold covers the server tool uses too, as input tokens of the same worth (rounded up).
            tools = features.tool_charge(premium, premium.tool_uses)
            input_estimate += math.ceil(Fraction(tools * money.PRICE_UNIT_TOKENS)
                                        / (price.max_input_rate * money.parse_multiplier(mult)))
        now = self.clock()
        n = need(input_estimate, max_tokens, max_tokens, price, mult)
        if self.shared is not None or isinstance(self.wallets, SharedWallets):
            if self.shared is not None:
                shared_ticket = await self._admit_shared(self.shared, request_id, key, n, now, price, mult)
            else:
                assert isinstance(self.wallets, SharedWallets)
                shared_ticket = await self._admit_recorded(self.wallets, request_id, key, n, now, price, mult)
            shared_ticket.input_estimate = billed_estimate
            shared_ticket.output_cap = shared_ticket.max_tokens or max_tokens
            shared_ticket.premium = premium
            return shared_ticket
        kw = await self._local_windows(key)
        n = _fit_headroom(n, kw.usd_headroom(now))
        decision = kw.admit(now, n.hold)
        if isinstance(decision, lim.Refused):
            raise self._refused(decision, kw, now)
        try:
            hold, lowered = await self.wallets.reserve(request_id, key.account_id, key.id, n, now,
                                                       now + self.hold_seconds)
        except BaseException:
            kw.release(decision)
            raise
        return Ticket(request_id, key.account_id, key.id, hold, price, mult, lowered, kw, decision,
                      input_estimate=billed_estimate, output_cap=lowered or max_tokens, premium=premium)

    @contextlib.asynccontextmanager
    async def free_request(self, key: KeyRecord) -> AsyncIterator[None]:
        """A request that costs nothing (``count_tokens``) but is still only for a funded key and
        counts against the key's request caps and concurrency while it runs."""
        if not self.enabled:
            yield
            return
        balance, held = await self.wallet(key.account_id)
        if balance - held <= 0:
            raise GatewayError("billing_error", "this key's wallet is empty; top it up to use the API",
                               headers={"x-should-retry": "false"})
        now = self.clock()
        kw = await self.windows(key)
        if not isinstance(kw, lim.KeyWindows):  # limits shared through Redis: the funded-key check only
            yield
            return
        decision = kw.admit(now, 0)
        if isinstance(decision, lim.Refused):
            err = _refusal(decision)
            err.headers.update(self._headroom(kw, now))
            raise err
        try:
            yield
        finally:
            kw.settle(decision, self.clock(), 0, 0)

    async def _admit_recorded(self, wallets: SharedWallets, request_id: str, key: KeyRecord, n: Need, now: float,
                              price: money.Price, mult: Decimal) -> Ticket:
        """Windows decided in the database, inside the hold's transaction (see ``recorded.py``). Only
        capped windows are read: a key without caps costs no more than its hold."""
        capped = tuple(s for s in self._window_specs(key)
                       if s.usd is not None or s.requests is not None or s.tokens is not None)
        if not capped and key.max_concurrency is None:
            hold, lowered = await wallets.reserve(request_id, key.account_id, key.id, n, now, now + self.hold_seconds)
            return Ticket(request_id, key.account_id, key.id, hold, price, mult, lowered, None, None)
        seen: list[tuple[lim.KeyWindows, lim.Ticket]] = []

        async def gate(conn: Any, n: Need) -> Need:
            kw = await recorded.key_windows(conn, key.id, capped, key.max_concurrency, now)
            n = _fit_headroom(n, kw.usd_headroom(now))
            decision = kw.admit(now, n.hold)
            if isinstance(decision, lim.Refused):
                raise self._refused(decision, kw, now)
            seen.append((kw, decision))
            return n

        hold, lowered = await wallets.reserve(request_id, key.account_id, key.id, n, now, now + self.hold_seconds,
                                              gate=gate)
        kw, decision = seen[-1]
        return Ticket(request_id, key.account_id, key.id, hold, price, mult, lowered, kw, decision)

    async def _admit_shared(self, shared: SharedLimits, request_id: str, key: KeyRecord, n: Need, now: float,
                            price: money.Price, mult: Decimal) -> Ticket:
        """Windows and slots in Redis, the hold in the database."""
        specs = self._window_specs(key)
        view: SharedView | None = None
        try:
            if any(s.usd is not None for s in specs):
                seen = await shared.view(key.id, specs, key.max_concurrency, now)
                n = _fit_headroom(n, seen.usd_headroom(now))
            decision = await shared.admit(key.id, specs, key.max_concurrency, request_id, n.hold, now,
                                          now + self.hold_seconds)
            if isinstance(decision, lim.Refused):
                raise self._refused(decision, None, now)
            view = decision
        except Unreachable:
            if self.redis_policy != "open":
                raise GatewayError(
                    "overloaded_error", "this key's limits cannot be checked right now (the gateway's shared "
                    "state is unreachable); retry shortly", status=503,
                    headers={"retry-after": "1", "x-should-retry": "true"}) from None
            log.warning("Redis unreachable: serving %s without checking its limits (redis_policy: open)",
                        request_id)
        try:
            hold, lowered = await self.wallets.reserve(request_id, key.account_id, key.id, n, now,
                                                       now + self.hold_seconds)
        except BaseException:
            if view is not None:
                await shared.settle(key.id, request_id, self.clock(), False, 0, 0, specs)
            raise
        return Ticket(request_id, key.account_id, key.id, hold, price, mult, lowered, view, None,
                      shared=view is not None)

    def _refused(self, r: lim.Refused, kw: lim.KeyWindows | SharedView | None, now: float) -> GatewayError:
        err = _refusal(r)
        if kw is not None:
            err.headers.update(self._headroom(kw, now))
        return err

    def headers(self, ticket: Ticket | None) -> dict[str, str]:
        """Remaining headroom of the key's capped windows (see README, "Limits and rate-limit headers")."""
        if ticket is None or ticket.windows is None:
            return {}
        return self._headroom(ticket.windows, self.clock())

    def _headroom(self, kw: lim.KeyWindows | SharedView, now: float) -> dict[str, str]:
        if not any(s.usd is not None or s.requests is not None or s.tokens is not None for s in kw.specs):
            return {}
        out: dict[str, str] = {}
        tight_req: lim.WindowState | None = None
        tight_tok: lim.WindowState | None = None
        for w in kw.snapshot(now):
            n = w.name
            if w.usd_cap is not None:
                out[f"bytespike-ratelimit-{n}-usd-limit"] = money.format_usd(w.usd_cap)
                out[f"bytespike-ratelimit-{n}-usd-remaining"] = money.format_usd(max(w.usd_remaining or 0, 0))
            if w.requests_cap is not None:
                out[f"bytespike-ratelimit-{n}-requests-remaining"] = str(max(w.requests_remaining or 0, 0))
                if tight_req is None or (w.requests_remaining or 0) < (tight_req.requests_remaining or 0):
                    tight_req = w
            if w.tokens_cap is not None:
                out[f"bytespike-ratelimit-{n}-tokens-remaining"] = str(max(w.tokens_remaining or 0, 0))
                if tight_tok is None or (w.tokens_remaining or 0) < (tight_tok.tokens_remaining or 0):
                    tight_tok = w
            if w.resets_at is not None and (w.usd_cap is not None or w.requests_cap is not None
                                            or w.tokens_cap is not None):
                out[f"bytespike-ratelimit-{n}-reset"] = _rfc3339(w.resets_at)
        for kind, tight in (("requests", tight_req), ("tokens", tight_tok)):
            if tight is not None:
                out[f"anthropic-ratelimit-{kind}-limit"] = str(getattr(tight, f"{kind}_cap"))
                out[f"anthropic-ratelimit-{kind}-remaining"] = str(max(getattr(tight, f"{kind}_remaining") or 0, 0))
                out[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(tight.resets_at or now)
        return out

    # ------------------------------------------------------------ settlement

    async def settle(self, call: Settleable) -> int:
        """Queue the request's settlement from what its call learnt; returns what it is charged
        (nano-USD) and leaves the typed usage it billed on ``call.billed``."""
        ticket, key, usage, outcome = call.ticket, call.key, call.usage, call.outcome
        assert outcome is not None, "a call is settled once it has an outcome"
        billable = outcome in (Outcome.SUCCEEDED, Outcome.CLIENT_DISCONNECTED) and usage is not None
        request_id = call.request_id
        u = self._usage(request_id, usage, ticket) if billable else money.Usage()
        call.billed = u if billable else None
        if not self.enabled:
            return 0
        now = self.clock()
        charge = 0
        account_id = ticket.account_id if ticket else (key.account_id if key else None)
        closed = False
        try:
            if billable and ticket is not None:
                charge = money.cost(u, ticket.price, ticket.multiplier)
                if ticket.premium.tool_price:
                    charge += features.tool_charge(ticket.premium, features.tool_uses(usage))
            if ticket is not None and charge > ticket.hold:
                # Only content the upstream fetched by URL can outgrow the hold's input estimate; the
                # answer was delivered, so it is charged in full (the wallet may dip below zero).
                log.warning("request %s cost %d nano-USD, more than its hold %d", request_id, charge, ticket.hold)
            if ticket is not None and isinstance(ticket.windows, lim.KeyWindows) and ticket.window_ticket is not None:
                if billable:
                    ticket.windows.settle(ticket.window_ticket, now, charge, u.total_tokens)
                else:
                    # A failure counts as a request in request-capped windows (it cost the
                    # upstream a call), never as spend or tokens.
                    ticket.windows.settle(ticket.window_ticket, now, 0, 0)
            elif ticket is not None and self.shared is not None and key is not None:
                if ticket.shared:
                    await self.shared.settle(key.id, request_id, now, billable, charge, u.total_tokens,
                                             self._window_specs(key))
                elif billable:  # served while Redis was away: count it once it is back
                    self.shared.missed(key.id, request_id, now, True, charge, u.total_tokens)
            if ticket is not None:
                self.wallets.settled(account_id, ticket.hold, charge)
            closed = True
        finally:
            if not closed and ticket is not None:
                # Whatever went wrong, the hold and the concurrency slot are never left open.
                if isinstance(ticket.windows, lim.KeyWindows) and ticket.window_ticket is not None:
                    ticket.windows.release(ticket.window_ticket)
                self.wallets.settled(account_id, ticket.hold, 0)
        resolved = call.resolved
        model_asked = resolved.asked if resolved else ""
        finished = time.perf_counter()
        self._put(books.Settlement(
            request_id=request_id, account_id=account_id, key_id=key.id if key else None, charge=charge,
            note=model_asked, had_hold=ticket is not None and ticket.hold > 0,
            record={
                "request_id": request_id, "created_at": now, "account_id": account_id,
                "key_id": key.id if key else None, "protocol": call.protocol, "model_asked": model_asked,
                "model_used": resolved.model.id if resolved else None, "provider": call.provider,
                "upstream_model": call.upstream_model,
                "stream": call.stream, "input_tokens": u.input_tokens if billable else 0,
                "output_tokens": u.output_tokens if billable else 0,
                "cache_read_tokens": u.cache_read_tokens if billable else 0,
                "cache_write_5m_tokens": u.cache_write_5m_tokens if billable else 0,
                "cache_write_1h_tokens": u.cache_write_1h_tokens if billable else 0,
                "cost": charge, "status": outcome.value, "http_status": call.status, "error_type": call.error_type,
                "latency_ms": (finished - call.started) * 1000,
                "ttft_ms": ((call.first_byte - call.started) * 1000) if call.first_byte else None,
                "session_id": call.attribution[0], "agent_id": call.attribution[1],
                "parent_agent_id": call.attribution[2], "task_id": call.task_id,
            },
            due=time.monotonic() + max(self._settle_delay, SETTLE_BATCH_SECONDS),
        ))
        return charge

    @staticmethod
    def _usage(request_id: str, usage: dict[str, Any] | None, ticket: Ticket | None) -> money.Usage:
        """The usage to bill a delivered answer for. Counts an upstream reported as something other
        than whole non-negative numbers of a sane size, or an answer that used no token at all,
        are not believed: the answer is billed at what its hold covered (never free)."""
        try:
            u = money.Usage.from_anthropic(usage)
            if all(_sane(getattr(u, f)) for f in _USAGE_FIELDS) and u.total_tokens > 0:
                return u
        except (ValueError, TypeError, AttributeError):
            pass
        log.warning("request %s: the upstream reported unusable usage %.200r; billed at its hold's tokens",
                    request_id, usage)
        if ticket is None:
            return money.Usage()
        return money.Usage(input_tokens=ticket.input_estimate, output_tokens=ticket.output_cap)

    async def wallet(self, account_id: str) -> tuple[int, int]:
        """(balance, held) as admission sees them: this process's own view when its wallets are in
        memory (charges not yet written included), else the database's."""
        if isinstance(self.wallets, LocalWallets):
            view = await self.wallets.view(account_id, self.clock())
            if view is not None:
                return view
        async with self.db.read() as conn:
            now = self.clock()
            return await books.balance(conn, account_id), await books.held(conn, account_id, now)

    def _put(self, item: books.HoldRow | books.Settlement) -> None:
        self._outstanding += 1
        self._queue.put_nowait(item)
        self._wake.set()

    def _done(self, n: int) -> None:
        self._outstanding -= n
        if self._outstanding <= 0:
            self._idle.set()

    async def _write_loop(self) -> None:
        """One writer for every hold row and settlement: batches, one transaction each, in order.

        A hold row is written only once its request has run for ``HOLD_ROW_DELAY`` seconds: most
        requests settle sooner, and then neither the row nor its deletion is written at all.
        """
        delayed: collections.deque[books.Settlement] = collections.deque()
        waiting: dict[str, books.HoldRow] = {}  # hold rows not written yet, oldest first
        while True:
            if self._queue.empty():
                # Sleep until something is queued or something is due. (Waiting on an event, not
                # on queue.get under a timeout, so no item can be lost to the timeout.)
                self._wake.clear()
                dues = [d for d in (delayed[0].due if delayed else None,
                                    next(iter(waiting.values())).due if waiting else None) if d is not None]
                timeout = max(min(dues) - time.monotonic(), 0) if dues else None
                if self._draining and dues:
                    timeout = 0
                if timeout is None or timeout > 0:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    except TimeoutError:
                        pass
            taken = 0
            while taken < 512 and not self._queue.empty():
                item = self._queue.get_nowait()
                taken += 1
                if isinstance(item, books.HoldRow):
                    waiting[item.id] = item
                else:
                    if waiting.pop(item.request_id, None) is not None:
                        item.had_hold = False  # settled before its hold row was ever written
                        self._done(1)
                    delayed.append(item)
            clock = math.inf if self._draining else time.monotonic()
            new_holds: list[books.HoldRow] = []
            while waiting:
                first = next(iter(waiting.values()))
                if first.due > clock:
                    break
                new_holds.append(waiting.pop(first.id))
            due: list[books.Settlement] = []
            while delayed and delayed[0].due <= clock:
                due.append(delayed.popleft())
            try:
                await self._write(new_holds, due)
            finally:
                for _ in range(taken):
                    self._queue.task_done()
                self._done(len(new_holds) + len(due))

    async def _write(self, new_holds: list[books.HoldRow], due: list[books.Settlement]) -> None:
        if not new_holds and not due:
            return
        async with self.wallets.settling:
            await self._write_batch(new_holds, due)

    async def _write_batch(self, new_holds: list[books.HoldRow], due: list[books.Settlement]) -> None:
        try:
            async with self.db.write() as conn:
                await books.insert_holds(conn, new_holds)
                await books.write_settlements(conn, due, self.clock())
        except Exception:  # the writer must outlive one bad batch; retried item by item below
            log.exception("a batch of %d holds and %d settlements failed; writing them one by one",
                          len(new_holds), len(due))
            items: list[books.HoldRow | books.Settlement] = [*new_holds, *due]
            for one in items:
                try:
                    async with self.db.write() as conn:
                        if isinstance(one, books.HoldRow):
                            await books.insert_holds(conn, [one])
                        elif isinstance(one, books.Settlement):
                            await books.write_settlements(conn, [one], self.clock())
                except Exception:
                    log.exception("could not write %s", one)
                    continue
                if isinstance(one, books.Settlement):
                    self.wallets.written(one.account_id, one.charge)
            return
        for s in due:
            if s.charge:
                self.wallets.written(s.account_id, s.charge)
        if self.shared is not None:
            await self.shared.written([(s.key_id, s.request_id) for s in due if s.key_id and s.had_hold])


def _fit_headroom(n: Need, headroom: int | None) -> Need:
    """Lower ``max_tokens`` to what the key's USD windows leave, when that still is a useful answer."""
    if headroom is None or n.hold <= headroom:
        return n
    fitted = n.fit(max(headroom, 0), n.max_tokens)
    if fitted is None:
        return n  # refused by the window, with its retry-after
    return dataclasses.replace(n, hold=n.amount(fitted), max_tokens=fitted)


SANE_TOKENS = 10**9
"""More tokens than any one request can use: a count above it is an upstream's nonsense."""
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
                 "cache_write_1h_tokens")


def _sane(n: int) -> bool:
    return 0 <= n <= SANE_TOKENS


def _refusal(r: lim.Refused) -> GatewayError:
    what = {"usd": "USD spend", "requests": "request", "tokens": "token", "concurrency": "concurrent request"}
    if r.reason == "concurrency":
        msg = "too many concurrent requests for this key"
    else:
        msg = f"this key's {r.window} {what.get(r.reason, r.reason)} limit is reached"
    retry = max(int(r.retry_after), 1)
    return GatewayError("rate_limit_error", f"{msg}; retry in {retry} seconds",
                        headers={"retry-after": str(retry), "x-should-retry": "true" if retry <= 60 else "false"})


def _name(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
