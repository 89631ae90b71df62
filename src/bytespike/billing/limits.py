"""Rolling usage windows per API key: admission against USD, request, token and concurrency caps.

Pure and in memory. The clock is the ``now`` argument (epoch seconds) of every method, so tests
and the caller decide what time it is. Sharing the state across instances is the caller's job.

Usage is kept in one-second buckets: spend recorded at time ``t`` lands in the bucket
``ceil(t)`` and counts in a window of length ``L`` while ``now < ceil(t) + L``. Counting never
ends before the exact event's window does (so caps hold against exact timestamps) and ends at
most one second later. Buckets carry running totals, so any window's sum is one subtraction
after a binary search, and ``retry_after`` is found by another binary search.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from bytespike.billing.money import format_usd, parse_usd

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_COUNT = re.compile(r"\d+")
_PRUNE_MIN = 256

Reason: TypeAlias = Literal["usd", "requests", "tokens", "concurrency"]


def parse_duration(text: str) -> int:
    """``"5h"``, ``"1d"``, ``"7d"``, ``"30m"``, ``"90s"``, ``"2w"``, ``"1h30m"`` -> seconds (> 0)."""
    s = text.strip().lower() if isinstance(text, str) else ""
    if not _DURATION.fullmatch(s):
        raise ValueError(f"bad duration {text!r}: expected a number and unit s, m, h, d or w, e.g. 5h, 30m, 7d")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(s))
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: must be longer than zero")
    return seconds


@dataclass(frozen=True)
class WindowSpec:
    """One rolling window and its optional caps (``usd`` in nano-USD)."""

    name: str
    seconds: int
    usd: int | None = None
    requests: int | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("window name must not be empty")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int) or self.seconds <= 0:
            raise ValueError(f"window {self.name!r}: seconds must be a positive int, got {self.seconds!r}")
        for cap in ("usd", "requests", "tokens"):
            v = getattr(self, cap)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"window {self.name!r}: {cap} cap must be a non-negative int, got {v!r}")


def _dims(spec: WindowSpec) -> tuple[tuple[Reason, int | None], ...]:
    """A window's caps in the order usage is kept: USD, requests, tokens."""
    return (("usd", spec.usd), ("requests", spec.requests), ("tokens", spec.tokens))


DEFAULT_WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("5h", 5 * 3600),
    WindowSpec("1d", 86400),
    WindowSpec("7d", 7 * 86400),
)
"""Windows every key tracks when nothing else is configured (no caps: usage reporting only)."""


def parse_limit_spec(text: str) -> WindowSpec:
    """``"5h:usd=10,requests=100,tokens=50000"`` -> WindowSpec; ``"5h"`` alone is a window without caps.

    ``usd`` is in USD (up to 9 decimals), ``requests`` and ``tokens`` are whole numbers; each at
    most once. Errors say what is wrong with which part.
    """
    if not isinstance(text, str):
        raise ValueError(f"bad limit {text!r}: expected text like 5h:usd=10,requests=100")
    window, colon, rest = text.strip().partition(":")
    try:
        seconds = parse_duration(window)
    except ValueError as e:
        raise ValueError(f"bad limit {text!r}: {e}") from None
    caps: dict[str, int] = {}
    if colon and not rest.strip():
        raise ValueError(f"bad limit {text!r}: nothing after ':' (expected usd=, requests= or tokens=)")
    for part in rest.split(",") if colon else ():
        key, eq, value = (p.strip() for p in part.partition("="))
        key = key.lower()
        if not eq or not value:
            raise ValueError(f"bad limit {text!r}: {part.strip()!r} is not NAME=VALUE")
        if key not in ("usd", "requests", "tokens"):
            raise ValueError(f"bad limit {text!r}: unknown cap {key!r} (expected usd, requests or tokens)")
        if key in caps:
            raise ValueError(f"bad limit {text!r}: {key} given twice")
        if key == "usd":
            try:
                caps[key] = parse_usd(value)
            except ValueError as e:
                raise ValueError(f"bad limit {text!r}: {e}") from None
        elif _COUNT.fullmatch(value):
            caps[key] = int(value)
        else:
            raise ValueError(f"bad limit {text!r}: {key} must be a whole number, got {value!r}")
    return WindowSpec(window.strip().lower(), seconds, **caps)


def format_limit_spec(spec: WindowSpec) -> str:
    """The inverse of :func:`parse_limit_spec`."""
    caps = []
    if spec.usd is not None:
        caps.append(f"usd={format_usd(spec.usd)}")
    if spec.requests is not None:
        caps.append(f"requests={spec.requests}")
    if spec.tokens is not None:
        caps.append(f"tokens={spec.tokens}")
    return spec.name + (":" + ",".join(caps) if caps else "")


@dataclass(frozen=True, eq=False, slots=True)
class Ticket:
    """An admitted request: its USD hold and its concurrency slot, open until settled or released."""

    id: int
    hold: int


@dataclass(frozen=True)
class Refused:
    """Why a request may not start, and in how many whole seconds it would fit."""

    window: str  # the window's name, or "concurrency"
    reason: Reason
    retry_after: int


Decision: TypeAlias = Ticket | Refused


@dataclass(frozen=True)
class UsageEvent:
    """One billed request from storage, to rebuild windows at start (``cost`` in nano-USD)."""

    time: float
    cost: int
    tokens: int
    requests: int = 1


@dataclass(frozen=True)
class WindowState:
    """One window as headers and ``GET /v1/usage`` show it. ``*_remaining`` is None without a cap.

    ``usd_remaining`` deducts open holds and ``requests_remaining`` in-flight requests. ``resets_at``
    is when the oldest counted usage ages out, ``clears_at`` when all of it has (None: empty).
    """

    name: str
    seconds: int
    usd_used: int
    usd_held: int
    usd_cap: int | None
    usd_remaining: int | None
    requests_used: int
    requests_in_flight: int
    requests_cap: int | None
    requests_remaining: int | None
    tokens_used: int
    tokens_cap: int | None
    tokens_remaining: int | None
    resets_at: float | None
    clears_at: float | None


class KeyWindows:
    """The rolling windows and open admissions of one key.

    Admission counts open work against caps so concurrent requests cannot overshoot: USD caps
    count open holds, request caps count in-flight requests, and the concurrency cap counts
    open tickets. A token cap admits while the window is below it (the next request's tokens are
    not known ahead), so it can be exceeded by the requests already running.
    """

    def __init__(self, specs: Sequence[WindowSpec] = DEFAULT_WINDOWS, max_concurrency: int | None = None) -> None:
        self._specs: tuple[WindowSpec, ...] = ()
        self._max_concurrency: int | None = None
        self.reconfigure(specs, max_concurrency)
        # Buckets: second (ascending) and running totals up to and including each bucket.
        self._keys: list[int] = []
        self._cum_usd: list[int] = []
        self._cum_req: list[int] = []
        self._cum_tok: list[int] = []
        self._base = (0, 0, 0)  # totals of buckets already pruned
        self._prune_at = _PRUNE_MIN
        self._open: dict[int, Ticket] = {}
        self._held = 0
        self._next_id = 1

    @property
    def specs(self) -> tuple[WindowSpec, ...]:
        return self._specs

    @property
    def max_concurrency(self) -> int | None:
        return self._max_concurrency

    @property
    def in_flight(self) -> int:
        return len(self._open)

    @property
    def buckets(self) -> int:
        """Seconds with recorded usage still kept in memory."""
        return len(self._keys)

    @property
    def held(self) -> int:
        """Sum of open USD holds, nano-USD."""
        return self._held

    def reconfigure(self, specs: Sequence[WindowSpec], max_concurrency: int | None = None) -> None:
        """Change caps keeping recorded usage (a longer window sees only what was not yet pruned)."""
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate window names in {names}")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 0
        ):
            raise ValueError(f"max_concurrency must be a non-negative int or None, got {max_concurrency!r}")
        self._specs = tuple(specs)
        self._max_concurrency = max_concurrency
        # Only capped dimensions are checked on admission: (dimension index, reason, cap) per window.
        plan = []
        for spec in self._specs:
            caps = [(d, r, c) for d, (r, c) in enumerate(_dims(spec)) if c is not None]
            if caps:
                plan.append((spec.name, spec.seconds, tuple(caps)))
        self._plan: tuple[tuple[str, int, tuple[tuple[int, Reason, int], ...]], ...] = tuple(plan)

    # -- window sums ---------------------------------------------------------------------

    def _front(self, now: float, seconds: int) -> int:
        """Index of the first bucket still counted in a window of ``seconds`` at ``now``."""
        return bisect_right(self._keys, now - seconds)

    def _before(self, cum: list[int], base: int, i: int) -> int:
        return cum[i - 1] if i else base

    def _used(self, i: int) -> tuple[int, int, int]:
        if not self._keys:
            return 0, 0, 0
        bu, br, bt = self._base
        return (
            self._cum_usd[-1] - self._before(self._cum_usd, bu, i),
            self._cum_req[-1] - self._before(self._cum_req, br, i),
            self._cum_tok[-1] - self._before(self._cum_tok, bt, i),
        )

    def _retry_after(self, now: float, seconds: int, i: int, cum: list[int], base: int, cap: int,
                     open_amount: int, need: int) -> int:
        """Whole seconds until the window's usage has aged down enough for ``need`` to fit.

        When open work blocks it even with the window empty, assume that work finishes first; when
        ``need`` alone exceeds the cap, answer when the window is empty (the most headroom).
        """
        target = cap - open_amount - need
        if target < 0:
            target = max(cap - need, 0)
        total = cum[-1] if cum else base
        if total - self._before(cum, base, i) <= target:
            return 1
        j = bisect_left(cum, total - target, lo=i)
        return max(1, math.ceil(self._keys[j] + seconds - now))

    def usd_headroom(self, now: float) -> int | None:
        """Smallest USD left across windows after open holds (>= 0), or None when no USD cap."""
        room: int | None = None
        for spec in self._specs:
            if spec.usd is not None:
                used = self._used(self._front(now, spec.seconds))[0]
                left = max(spec.usd - used - self._held, 0)
                room = left if room is None else min(room, left)
        return room

    # -- admission -----------------------------------------------------------------------

    def admit(self, now: float, hold_nano: int) -> Decision:
        """Admit a request holding ``hold_nano``, or refuse it naming the window that waits longest.

        A request fits a window when used USD + open holds + ``hold_nano`` <= its USD cap,
        recorded + in-flight requests + 1 <= its request cap, and recorded tokens < its token cap;
        and open tickets + 1 <= the concurrency cap. ``retry_after`` is the longest wait among
        the refusing windows: the exact second the request fits if nothing else changes (1 for
        concurrency, which waits on running requests, not on time).
        """
        if isinstance(hold_nano, bool) or not isinstance(hold_nano, int) or hold_nano < 0:
            raise ValueError(f"hold must be a non-negative int of nano-USD, got {hold_nano!r}")
        refusal: Refused | None = None
        inflight = len(self._open)
        if self._max_concurrency is not None and inflight + 1 > self._max_concurrency:
            refusal = Refused("concurrency", "concurrency", 1)
        keys = self._keys
        cums = (self._cum_usd, self._cum_req, self._cum_tok)
        opens = (self._held, inflight, 0)
        needs = (hold_nano, 1, 1)
        for name, seconds, caps in self._plan:
            i = bisect_right(keys, now - seconds)
            for dim, reason, cap in caps:
                cum = cums[dim]
                base = self._base[dim]
                used = cum[-1] - (cum[i - 1] if i else base) if cum else 0
                if used + opens[dim] + needs[dim] <= cap:
                    continue
                wait = self._retry_after(now, seconds, i, cum, base, cap, opens[dim], needs[dim])
                if refusal is None or wait > refusal.retry_after:
                    refusal = Refused(name, reason, wait)
        if refusal is not None:
            return refusal
        ticket = Ticket(self._next_id, hold_nano)
        self._next_id += 1
        self._open[ticket.id] = ticket
        self._held += hold_nano
        return ticket

    def hold_open(self, hold_nano: int) -> Ticket:
        """Count work admitted elsewhere (another process's request in flight) without checking caps."""
        ticket = Ticket(self._next_id, hold_nano)
        self._next_id += 1
        self._open[ticket.id] = ticket
        self._held += hold_nano
        return ticket

    def _close(self, ticket: Ticket) -> bool:
        if self._open.get(ticket.id) is not ticket:
            return False
        del self._open[ticket.id]
        self._held -= ticket.hold
        return True

    def settle(self, ticket: Ticket, now: float, cost_nano: int, tokens: int) -> None:
        """A request finished and was billed: free its hold and slot, record one request,
        ``cost_nano`` and ``tokens`` at ``now``.

        Failures are not billed and call :meth:`release` instead, so they count against no cap;
        a client that left mid-stream was billed and settles here.
        """
        if type(cost_nano) is not int or cost_nano < 0 or type(tokens) is not int or tokens < 0:
            raise ValueError(f"cost and tokens must be non-negative ints, got {cost_nano!r}, {tokens!r}")
        if not self._close(ticket):
            raise ValueError(f"ticket {ticket.id} is not open on this key (already settled or released?)")
        self._record(now, cost_nano, 1, tokens)

    def release(self, ticket: Ticket) -> bool:
        """A request failed: free its hold and slot, record nothing. False if it was not open."""
        return self._close(ticket)

    # -- recording -----------------------------------------------------------------------

    def _record(self, now: float, usd: int, requests: int, tokens: int) -> None:
        second = math.ceil(now)
        if self._keys and second <= self._keys[-1]:  # same second, or a clock that stepped back
            self._cum_usd[-1] += usd
            self._cum_req[-1] += requests
            self._cum_tok[-1] += tokens
            return
        bu, br, bt = self._base
        self._keys.append(second)
        self._cum_usd.append((self._cum_usd[-1] if self._cum_usd else bu) + usd)
        self._cum_req.append((self._cum_req[-1] if self._cum_req else br) + requests)
        self._cum_tok.append((self._cum_tok[-1] if self._cum_tok else bt) + tokens)
        if len(self._keys) >= self._prune_at:
            self.prune(now)

    def prune(self, now: float) -> None:
        """Forget buckets no window counts any more (amortised: called as buckets accumulate)."""
        longest = max((s.seconds for s in self._specs), default=0)
        i = self._front(now, longest)
        if i:
            self._base = (self._cum_usd[i - 1], self._cum_req[i - 1], self._cum_tok[i - 1])
            del self._keys[:i], self._cum_usd[:i], self._cum_req[:i], self._cum_tok[:i]
        self._prune_at = max(_PRUNE_MIN, 2 * len(self._keys))

    def load(self, events: Iterable[UsageEvent], now: float) -> None:
        """Add stored usage (any order) to what is recorded, e.g. when the key is first seen."""
        merged: dict[int, list[int]] = {}
        prev = self._base
        for k, cu, cr, ct in zip(self._keys, self._cum_usd, self._cum_req, self._cum_tok, strict=True):
            merged[k] = [cu - prev[0], cr - prev[1], ct - prev[2]]
            prev = (cu, cr, ct)
        for e in events:
            if e.cost < 0 or e.tokens < 0 or e.requests < 0:
                raise ValueError(f"usage event with negative amounts: {e!r}")
            b = merged.setdefault(math.ceil(e.time), [0, 0, 0])
            b[0] += e.cost
            b[1] += e.requests
            b[2] += e.tokens
        self._keys, self._cum_usd, self._cum_req, self._cum_tok = [], [], [], []
        bu, br, bt = self._base
        for k in sorted(merged):
            u, r, t = merged[k]
            bu, br, bt = bu + u, br + r, bt + t
            self._keys.append(k)
            self._cum_usd.append(bu)
            self._cum_req.append(br)
            self._cum_tok.append(bt)
        self.prune(now)

    # -- reporting -----------------------------------------------------------------------

    def snapshot(self, now: float) -> list[WindowState]:
        """Each window's use, caps and headroom at ``now``."""
        states = []
        inflight = len(self._open)
        for spec in self._specs:
            i = self._front(now, spec.seconds)
            usd, req, tok = self._used(i)
            counted = i < len(self._keys)
            states.append(
                WindowState(
                    name=spec.name,
                    seconds=spec.seconds,
                    usd_used=usd,
                    usd_held=self._held,
                    usd_cap=spec.usd,
                    usd_remaining=None if spec.usd is None else max(spec.usd - usd - self._held, 0),
                    requests_used=req,
                    requests_in_flight=inflight,
                    requests_cap=spec.requests,
                    requests_remaining=None if spec.requests is None else max(spec.requests - req - inflight, 0),
                    tokens_used=tok,
                    tokens_cap=spec.tokens,
                    tokens_remaining=None if spec.tokens is None else max(spec.tokens - tok, 0),
                    resets_at=float(self._keys[i] + spec.seconds) if counted else None,
                    clears_at=float(self._keys[-1] + spec.seconds) if counted else None,
                )
            )
        return states

    def is_idle(self, now: float) -> bool:
        """Nothing open and nothing any window still counts: safe to forget."""
        longest = max((s.seconds for s in self._specs), default=0)
        return not self._open and self._front(now, longest) >= len(self._keys)


class LimitRegistry:
    """Key id -> its :class:`KeyWindows`, created on first use; :meth:`prune` forgets idle keys."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyWindows] = {}

    def get(self, key_id: str) -> KeyWindows | None:
        return self._keys.get(key_id)

    def ensure(
        self, key_id: str, specs: Sequence[WindowSpec] = DEFAULT_WINDOWS, max_concurrency: int | None = None
    ) -> tuple[KeyWindows, bool]:
        """The key's windows with these caps, and whether they were just created (then load history)."""
        kw = self._keys.get(key_id)
        if kw is None:
            kw = self._keys[key_id] = KeyWindows(specs, max_concurrency)
            return kw, True
        if kw.specs != tuple(specs) or kw.max_concurrency != max_concurrency:
            kw.reconfigure(specs, max_concurrency)
        return kw, False

    def discard(self, key_id: str) -> None:
        """Forget a key (e.g. revoked)."""
        self._keys.pop(key_id, None)

    def prune(self, now: float) -> int:
        """Drop idle keys and old buckets of the others; returns how many keys were dropped."""
        idle = [k for k, kw in self._keys.items() if kw.is_idle(now)]
        for k in idle:
            del self._keys[k]
        for kw in self._keys.values():
            kw.prune(now)
        return len(idle)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys
