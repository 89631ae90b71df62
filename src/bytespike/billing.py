"""Admission and settlement: limits, the wallet hold, the charge and the usage record.

Admission (before the upstream call) checks the key's rolling windows in memory, then places a
hold for the request's largest possible cost in one write transaction that also checks the
balance less open holds, so no account is ever overdrawn however many requests run at once.
Settlement (after the answer) is queued to a background writer that, per request and in one
transaction, appends the charge to the ledger (idempotent on the request id), deletes the hold
and writes the usage record. Failures delete the hold and charge nothing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, select

from . import limits as lim
from . import money
from .catalogue import Catalogue, Resolved
from .errors import GatewayError
from .store.accounts import KeyRecord, append_entry
from .store.db import Database
from .store.schema import accounts, holds, ledger, usage_records

log = logging.getLogger("bytespike.billing")

HOLD_GRACE_SECONDS = 3600.0


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
    windows: lim.KeyWindows | None
    window_ticket: lim.Ticket | None


class Billing:
    def __init__(self, db: Database, catalogue: Catalogue, default_windows: tuple[str, ...],
                 hold_seconds: float = HOLD_GRACE_SECONDS, clock: Any = time.time) -> None:
        self.db = db
        self.catalogue = catalogue
        self.clock = clock
        self.hold_seconds = hold_seconds
        self.enabled = True
        self.limits = lim.LimitRegistry()
        self._default_windows = tuple(lim.parse_duration(w) for w in default_windows)
        self._prices: dict[str, money.Price] = {}
        self._specs: dict[tuple[str, ...], tuple[lim.WindowSpec, ...]] = {}
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._loading: dict[str, asyncio.Future[None]] = {}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.release_expired_holds()
        self._writer = asyncio.create_task(self._write_loop())

    async def stop(self) -> None:
        """Flush every queued settlement before returning."""
        await self._queue.join()
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None

    async def flush(self) -> None:
        await self._queue.join()

    async def release_expired_holds(self) -> int:
        async with self.db.write() as conn:
            res = await conn.execute(delete(holds).where(holds.c.expires_at <= self.clock()))
        return res.rowcount or 0

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

    async def windows(self, key: KeyRecord) -> lim.KeyWindows:
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

    async def _history(self, key_id: str, since: float) -> list[lim.UsageEvent]:
        tokens = (usage_records.c.input_tokens + usage_records.c.output_tokens + usage_records.c.cache_read_tokens
                  + usage_records.c.cache_write_5m_tokens + usage_records.c.cache_write_1h_tokens)
        async with self.db.read() as conn:
            rows = (await conn.execute(
                select(usage_records.c.created_at, usage_records.c.cost, tokens)
                .where(usage_records.c.key_id == key_id, usage_records.c.created_at > since,
                       usage_records.c.status.in_(("succeeded", "client_disconnected")))
                .order_by(usage_records.c.created_at)
            )).all()
        return [lim.UsageEvent(float(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def admit(self, request_id: str, key: KeyRecord, resolved: Resolved, max_tokens: int,
                    input_estimate: int) -> Ticket:
        model_id = resolved.model.id
        price = self.price(model_id)
        mult = self.catalogue.multiplier(key.group)
        if not self.enabled:
            return Ticket(request_id, key.account_id, key.id, 0, price, mult, None, None, None)
        now = self.clock()
        kw = await self.windows(key)
        lowered: int | None = None
        hold = money.hold_amount(input_estimate, max_tokens, price, mult)
        headroom = kw.usd_headroom(now)
        if headroom is not None and hold > headroom:
            lowered = money.affordable_max_tokens(max(headroom, 0), input_estimate, price, mult, max_tokens)
            if lowered is not None:
                hold = money.hold_amount(input_estimate, lowered, price, mult)
        decision = kw.admit(now, hold)
        if isinstance(decision, lim.Refused):
            raise _refusal(decision)
        try:
            hold, lowered = await self._place_hold(request_id, key, input_estimate, lowered or max_tokens, max_tokens,
                                                   price, mult, hold, now)
        except BaseException:
            kw.release(decision)
            raise
        return Ticket(request_id, key.account_id, key.id, hold, price, mult, lowered, kw, decision)

    async def _place_hold(self, request_id: str, key: KeyRecord, input_estimate: int, max_tokens: int,
                          requested: int, price: money.Price, mult: Decimal, hold: int, now: float
                          ) -> tuple[int, int | None]:
        lowered = max_tokens if max_tokens < requested else None
        async with self.db.write() as conn:
            if not self.db.sqlite:
                await conn.execute(select(accounts.c.id).where(accounts.c.id == key.account_id).with_for_update())
            balance = (await conn.execute(
                select(ledger.c.balance_after).where(ledger.c.account_id == key.account_id)
                .order_by(ledger.c.id.desc()).limit(1)
            )).scalar()
            held = (await conn.execute(
                select(func.coalesce(func.sum(holds.c.amount), 0))
                .where(holds.c.account_id == key.account_id, holds.c.expires_at > now)
            )).scalar_one()
            available = int(balance or 0) - int(held)
            if hold > available:
                n = money.affordable_max_tokens(max(available, 0), input_estimate, price, mult, max_tokens)
                if n is None:
                    raise GatewayError(
                        "billing_error",
                        f"insufficient balance: this request needs up to {money.format_usd(hold)} USD held and "
                        f"the wallet has {money.format_usd(max(available, 0))} USD available",
                        headers={"x-should-retry": "false"},
                    )
                hold = money.hold_amount(input_estimate, n, price, mult)
                lowered = n if n < requested else None
            await conn.execute(insert(holds).values(
                id=request_id, account_id=key.account_id, key_id=key.id, amount=hold, created_at=now,
                expires_at=now + self.hold_seconds,
            ))
        return hold, lowered

    def headers(self, ticket: Ticket | None) -> dict[str, str]:
        """Remaining headroom of the key's capped windows (see README, "Rate-limit headers")."""
        if ticket is None or ticket.windows is None:
            return {}
        out: dict[str, str] = {}
        tight_req: lim.WindowState | None = None
        tight_tok: lim.WindowState | None = None
        for w in ticket.windows.snapshot(self.clock()):
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
        for kind, w in (("requests", tight_req), ("tokens", tight_tok)):
            if w is not None:
                out[f"anthropic-ratelimit-{kind}-limit"] = str(getattr(w, f"{kind}_cap"))
                out[f"anthropic-ratelimit-{kind}-remaining"] = str(max(getattr(w, f"{kind}_remaining") or 0, 0))
                out[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(w.resets_at or self.clock())
        return out

    # ------------------------------------------------------------ settlement

    async def settle(self, ticket: Ticket | None, *, request_id: str, key: KeyRecord | None, protocol: str,
                     model_asked: str, model_used: str | None, provider: str | None, upstream_model: str | None,
                     stream: bool, usage: dict[str, Any] | None, outcome: Outcome, http_status: int,
                     error_type: str | None, latency_ms: float, ttft_ms: float | None) -> None:
        now = self.clock()
        u = money.Usage.from_anthropic(usage) if usage is not None else money.Usage()
        billable = outcome in (Outcome.SUCCEEDED, Outcome.CLIENT_DISCONNECTED) and usage is not None
        charge = money.cost(u, ticket.price, ticket.multiplier) if (billable and ticket is not None) else 0
        if ticket is not None and ticket.windows is not None and ticket.window_ticket is not None:
            if billable:
                ticket.windows.settle(ticket.window_ticket, now, charge, u.total_tokens)
            else:
                ticket.windows.release(ticket.window_ticket)
        self._queue.put_nowait({
            "request_id": request_id,
            "account_id": ticket.account_id if ticket else (key.account_id if key else None),
            "key_id": key.id if key else None,
            "hold": ticket is not None and ticket.hold > 0,
            "charge": charge,
            "record": {
                "request_id": request_id, "created_at": now,
                "account_id": ticket.account_id if ticket else (key.account_id if key else None),
                "key_id": key.id if key else None, "protocol": protocol, "model_asked": model_asked,
                "model_used": model_used, "provider": provider, "upstream_model": upstream_model,
                "stream": stream, "input_tokens": u.input_tokens if billable else 0,
                "output_tokens": u.output_tokens if billable else 0,
                "cache_read_tokens": u.cache_read_tokens if billable else 0,
                "cache_write_5m_tokens": u.cache_write_5m_tokens if billable else 0,
                "cache_write_1h_tokens": u.cache_write_1h_tokens if billable else 0,
                "cost": charge, "status": outcome.value, "http_status": http_status, "error_type": error_type,
                "latency_ms": latency_ms, "ttft_ms": ttft_ms,
            },
        })

    async def _write_loop(self) -> None:
        while True:
            item = await self._queue.get()
            batch = [item]
            while len(batch) < 256 and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception:  # the writer must outlive one bad batch; retried item by item below
                log.exception("usage batch failed; writing its records one by one")
                for one in batch:
                    try:
                        await self._write([one])
                    except Exception:
                        log.exception("usage record %s could not be written", one["request_id"])
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        async with self.db.write() as conn:
            for item in batch:
                rid = item["request_id"]
                if item["charge"] and item["account_id"]:
                    exists = (await conn.execute(select(ledger.c.id).where(ledger.c.request_id == rid))).first()
                    if exists is None:
                        await append_entry(conn, item["account_id"], "charge", -item["charge"],
                                           f"{item['record']['model_asked']}", rid, item["key_id"])
                if item["hold"]:
                    await conn.execute(delete(holds).where(holds.c.id == rid))
                await conn.execute(insert(usage_records).values(**item["record"]))


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
