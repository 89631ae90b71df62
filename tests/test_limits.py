"""Rolling windows: caps, holds, concurrency, retry-after to the second, and a stateful model check."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bytespike.billing.limits import (
    DEFAULT_WINDOWS,
    KeyWindows,
    LimitRegistry,
    Refused,
    Ticket,
    UsageEvent,
    WindowSpec,
    format_limit_spec,
    parse_duration,
    parse_limit_spec,
)
from bytespike.billing.money import parse_usd

T0 = 1_700_000_000.0
H = 3600
D = 86400
USD = parse_usd(1)


def _spend(kw: KeyWindows, now: float, usd: int, tokens: int = 0) -> None:
    t = kw.admit(now, usd)
    assert isinstance(t, Ticket), t
    kw.settle(t, now, usd, tokens)


# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("5h", 18_000), ("1d", 86_400), ("7d", 604_800), ("30m", 1_800),
                                               ("90s", 90), ("2w", 1_209_600), ("1h30m", 5_400), (" 5H ", 18_000)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "h", "5x", "-5h", "0h", "1.5h", "5 h"])
def test_parse_duration_refuses_bad_text(bad: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(bad)


def test_parse_limit_spec_reads_every_cap() -> None:
    assert parse_limit_spec("5h:usd=10,requests=100,tokens=50000") == WindowSpec("5h", 18_000, 10 * USD, 100, 50_000)
    assert parse_limit_spec("30m:usd=0.25") == WindowSpec("30m", 1_800, usd=250_000_000)
    assert parse_limit_spec("7d") == WindowSpec("7d", 604_800)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("5x:usd=1", "bad duration"),
        ("5h:usd=-1", "negative"),
        ("5h:usd=1,usd=2", "usd given twice"),
        ("5h:dollars=1", "unknown cap 'dollars'"),
        ("5h:requests=1.5", "requests must be a whole number"),
        ("5h:tokens", "is not NAME=VALUE"),
        ("5h:", "nothing after ':'"),
        ("5h:usd=0.0000000001", "more than 9 decimals"),
    ],
)
def test_parse_limit_spec_errors_say_what_is_wrong(bad: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_limit_spec(bad)


specs = st.builds(
    WindowSpec,
    name=st.sampled_from(["5h", "1d", "7d", "30m", "90s"]),
    seconds=st.just(1),
    usd=st.none() | st.integers(0, 10**15),
    requests=st.none() | st.integers(0, 10**6),
    tokens=st.none() | st.integers(0, 10**9),
)


@given(specs)
def test_limit_spec_text_round_trips(spec: WindowSpec) -> None:
    spec = WindowSpec(spec.name, parse_duration(spec.name), spec.usd, spec.requests, spec.tokens)
    assert parse_limit_spec(format_limit_spec(spec)) == spec


# -- USD windows -----------------------------------------------------------------------------


def test_5h_usd_cap_refuses_at_the_cap_and_reopens_exactly_when_oldest_spend_ages_out() -> None:
    kw = KeyWindows([WindowSpec("5h", 5 * H, usd=10 * USD)])
    _spend(kw, T0, 4 * USD)
    _spend(kw, T0 + H, 4 * USD)
    now = T0 + 2 * H
    refused = kw.admit(now, 3 * USD)
    # 8 used + 3 > 10: the 4 spent at T0 must age out, at T0 + 5h
    assert refused == Refused("5h", "usd", 3 * H)
    assert isinstance(kw.admit(now + refused.retry_after - 1, 3 * USD), Refused)
    assert isinstance(kw.admit(now + refused.retry_after, 3 * USD), Ticket)


def test_a_request_exactly_at_the_cap_is_admitted_and_one_nano_more_is_not() -> None:
    kw = KeyWindows([WindowSpec("5h", 5 * H, usd=10 * USD)])
    _spend(kw, T0, 4 * USD)
    assert isinstance(kw.admit(T0 + 1, 6 * USD + 1), Refused)
    assert isinstance(kw.admit(T0 + 1, 6 * USD), Ticket)


def test_retry_after_rounds_up_to_the_second_for_fractional_times() -> None:
    kw = KeyWindows([WindowSpec("1m", 60, usd=USD)])
    _spend(kw, T0 + 0.25, USD)  # counted in the bucket of second T0 + 1, until T0 + 61
    r = kw.admit(T0 + 10.5, 1)
    assert r == Refused("1m", "usd", 51)  # ceil(61 - 10.5)
    assert isinstance(kw.admit(T0 + 10.5 + 50, 1), Refused)
    assert isinstance(kw.admit(T0 + 10.5 + 51, 1), Ticket)


def test_1d_and_7d_windows_are_independent_of_5h() -> None:
    kw = KeyWindows([
        WindowSpec("5h", 5 * H, usd=10 * USD),
        WindowSpec("1d", D, usd=20 * USD),
        WindowSpec("7d", 7 * D, usd=30 * USD),
    ])
    _spend(kw, T0, 10 * USD)
    assert kw.admit(T0 + 1, USD) == Refused("5h", "usd", 5 * H - 1)
    _spend(kw, T0 + 5 * H, 10 * USD)
    # 5h is empty again at T0 + 10h but the day holds 20
    assert kw.admit(T0 + 10 * H, USD) == Refused("1d", "usd", D - 10 * H)
    _spend(kw, T0 + D, 10 * USD)
    now = T0 + D + 5 * H
    # 5h empty, 1d has 10 of 20, but the week has 30 of 30 until the T0 spend ages out
    assert kw.usd_headroom(now) == 0
    r = kw.admit(now, USD)
    assert r == Refused("7d", "usd", 7 * D - D - 5 * H)
    assert isinstance(kw.admit(now + r.retry_after - 1, USD), Refused)
    assert isinstance(kw.admit(now + r.retry_after, USD), Ticket)


def test_refusal_names_the_window_that_waits_longest() -> None:
    kw = KeyWindows([WindowSpec("5h", 5 * H, usd=10 * USD), WindowSpec("1d", D, usd=10 * USD)])
    _spend(kw, T0, 10 * USD)
    assert kw.admit(T0 + H, USD) == Refused("1d", "usd", D - H)


def test_holds_count_so_concurrent_admits_cannot_overshoot() -> None:
    kw = KeyWindows([WindowSpec("5h", 5 * H, usd=10 * USD)])
    tickets = [kw.admit(T0, 3 * USD) for _ in range(5)]
    admitted = [t for t in tickets if isinstance(t, Ticket)]
    assert len(admitted) == 3
    assert kw.usd_headroom(T0) == USD
    assert all(r == Refused("5h", "usd", 1) for r in tickets[3:])  # nothing to age out: waits on holds
    kw.release(admitted[0])
    assert isinstance(kw.admit(T0, 3 * USD), Ticket)


def test_settled_spend_replaces_the_hold() -> None:
    kw = KeyWindows([WindowSpec("5h", 5 * H, usd=10 * USD)])
    t = kw.admit(T0, 8 * USD)
    assert isinstance(t, Ticket) and kw.usd_headroom(T0) == 2 * USD
    kw.settle(t, T0 + 5, USD, 100)
    assert kw.held == 0 and kw.usd_headroom(T0 + 5) == 9 * USD


def test_a_hold_larger_than_the_cap_waits_for_the_window_to_empty() -> None:
    kw = KeyWindows([WindowSpec("1h", H, usd=10 * USD)])
    _spend(kw, T0, USD)
    _spend(kw, T0 + 100, USD)
    assert kw.admit(T0 + 200, 11 * USD) == Refused("1h", "usd", H - 100)


def test_headroom_is_none_without_usd_caps_and_the_smallest_otherwise() -> None:
    assert KeyWindows(DEFAULT_WINDOWS).usd_headroom(T0) is None
    kw = KeyWindows([WindowSpec("5h", 5 * H, usd=10 * USD), WindowSpec("1d", D, usd=12 * USD)])
    _spend(kw, T0, 5 * USD)
    _spend(kw, T0 + 6 * H, 5 * USD)
    assert kw.usd_headroom(T0 + 6 * H) == 2 * USD  # 1d: 12 - 10; 5h: 10 - 5


# -- requests, tokens, concurrency ------------------------------------------------------------


def test_request_cap_counts_settled_and_in_flight_requests() -> None:
    kw = KeyWindows([WindowSpec("1h", H, requests=3)])
    for dt in (0, 10, 20):
        _spend(kw, T0 + dt, 0)
    r = kw.admit(T0 + 30, 0)
    assert r == Refused("1h", "requests", H - 30)
    assert isinstance(kw.admit(T0 + H - 1, 0), Refused)
    t = kw.admit(T0 + H, 0)
    assert isinstance(t, Ticket)
    # T0+10 and T0+20 still count; with one in flight the window is full
    assert kw.admit(T0 + H, 0) == Refused("1h", "requests", 10)


def test_failed_requests_count_against_nothing() -> None:
    kw = KeyWindows([WindowSpec("1h", H, usd=USD, requests=2)])
    for _ in range(10):
        t = kw.admit(T0, USD)
        assert isinstance(t, Ticket)
        assert kw.release(t) is True
        assert kw.release(t) is False
    assert kw.snapshot(T0)[0].requests_used == 0 and kw.held == 0


def test_settling_twice_is_an_error() -> None:
    kw = KeyWindows()
    t = kw.admit(T0, 5)
    assert isinstance(t, Ticket)
    kw.settle(t, T0, 5, 1)
    with pytest.raises(ValueError, match="not open"):
        kw.settle(t, T0, 5, 1)


def test_token_cap_refuses_when_full_and_reopens_when_enough_ages_out() -> None:
    kw = KeyWindows([WindowSpec("1h", H, tokens=1000)])
    _spend(kw, T0, 0, tokens=600)
    _spend(kw, T0 + 100, 0, tokens=500)
    r = kw.admit(T0 + 200, 0)
    assert r == Refused("1h", "tokens", H - 200)  # after T0's 600 go, 500 < 1000
    assert isinstance(kw.admit(T0 + 200 + r.retry_after - 1, 0), Refused)
    assert isinstance(kw.admit(T0 + 200 + r.retry_after, 0), Ticket)


def test_token_cap_exactly_reached_is_full() -> None:
    kw = KeyWindows([WindowSpec("1h", H, tokens=1000)])
    _spend(kw, T0, 0, tokens=999)
    assert isinstance(kw.admit(T0, 0), Ticket)
    kw2 = KeyWindows([WindowSpec("1h", H, tokens=1000)])
    _spend(kw2, T0, 0, tokens=1000)
    assert isinstance(kw2.admit(T0, 0), Refused)


def test_concurrency_cap_refuses_over_it_and_admits_after_a_settle() -> None:
    kw = KeyWindows(DEFAULT_WINDOWS, max_concurrency=2)
    a, b = kw.admit(T0, 1), kw.admit(T0, 1)
    assert isinstance(a, Ticket) and isinstance(b, Ticket)
    assert kw.admit(T0, 1) == Refused("concurrency", "concurrency", 1)
    kw.settle(a, T0 + 3, 1, 10)
    assert isinstance(kw.admit(T0 + 3, 1), Ticket)
    assert kw.in_flight == 2


def test_tickets_of_another_key_are_not_accepted() -> None:
    k1, k2 = KeyWindows(), KeyWindows()
    t1, t2 = k1.admit(T0, 1), k2.admit(T0, 1)
    assert isinstance(t1, Ticket) and isinstance(t2, Ticket) and t1.id == t2.id
    with pytest.raises(ValueError):
        k1.settle(t2, T0, 1, 1)
    assert k2.release(t2) is True


# -- snapshot, load, memory -----------------------------------------------------------------


def test_snapshot_reports_use_caps_and_resets() -> None:
    kw = KeyWindows([WindowSpec("5h", 5 * H, usd=10 * USD, requests=100, tokens=50_000), WindowSpec("7d", 7 * D)])
    _spend(kw, T0, 2 * USD, tokens=1000)
    _spend(kw, T0 + 60, 3 * USD, tokens=2000)
    open_ticket = kw.admit(T0 + 120, USD)
    assert isinstance(open_ticket, Ticket)
    five, week = kw.snapshot(T0 + 120)
    assert (five.usd_used, five.usd_held, five.usd_cap, five.usd_remaining) == (5 * USD, USD, 10 * USD, 4 * USD)
    assert (five.requests_used, five.requests_in_flight, five.requests_remaining) == (2, 1, 97)
    assert (five.tokens_used, five.tokens_remaining) == (3000, 47_000)
    assert (five.resets_at, five.clears_at) == (T0 + 5 * H, T0 + 60 + 5 * H)
    assert (week.usd_used, week.usd_remaining, week.requests_remaining) == (5 * USD, None, None)
    later, _ = kw.snapshot(T0 + 5 * H)
    assert (later.usd_used, later.resets_at) == (3 * USD, T0 + 60 + 5 * H)
    empty, _ = kw.snapshot(T0 + 6 * H)
    assert (empty.usd_used, empty.resets_at, empty.clears_at) == (0, None, None)


def test_load_rebuilds_windows_from_stored_usage_in_any_order() -> None:
    events = [UsageEvent(T0 + 7200, 3 * USD, 30), UsageEvent(T0, 4 * USD, 40), UsageEvent(T0 - 8 * D, 99 * USD, 1),
              UsageEvent(T0 + 3600, 2 * USD, 20)]
    kw = KeyWindows([WindowSpec("5h", 5 * H, usd=10 * USD), WindowSpec("7d", 7 * D)])
    kw.load(events, T0 + 7300)
    five, week = kw.snapshot(T0 + 7300)
    assert (five.usd_used, five.requests_used, five.tokens_used) == (9 * USD, 3, 90)
    assert week.usd_used == 9 * USD  # the 8-day-old spend is gone
    assert kw.admit(T0 + 7300, 2 * USD) == Refused("5h", "usd", 5 * H - 7300)


def test_memory_is_bounded_by_the_longest_window() -> None:
    kw = KeyWindows([WindowSpec("10m", 600, usd=10**15)])
    for s in range(20_000):
        _spend(kw, T0 + s, 1)
    assert kw.buckets <= 2 * 601
    assert kw.snapshot(T0 + 19_999)[0].usd_used == 600


def test_registry_creates_once_reconfigures_and_forgets_idle_keys() -> None:
    reg = LimitRegistry()
    kw, created = reg.ensure("k1", [WindowSpec("1h", H, usd=10 * USD)])
    assert created
    _spend(kw, T0, USD)
    same, created = reg.ensure("k1", [WindowSpec("1h", H, usd=USD)], max_concurrency=3)
    assert same is kw and not created
    assert kw.max_concurrency == 3 and kw.usd_headroom(T0) == 0  # new cap, old usage kept
    reg.ensure("k2")
    assert reg.prune(T0 + 1) == 1 and "k2" not in reg and "k1" in reg
    assert reg.prune(T0 + H) == 1 and len(reg) == 0


def test_admit_and_settle_cost_microseconds_with_a_full_week_of_buckets() -> None:
    kw = KeyWindows([WindowSpec("5h", 5 * H, usd=10**18, requests=10**9, tokens=10**15),
                     WindowSpec("1d", D, usd=10**18), WindowSpec("7d", 7 * D, usd=10**18)], max_concurrency=100)
    kw.load([UsageEvent(T0 + s, 1000, 10) for s in range(0, 7 * D, 3)], T0 + 7 * D)
    n = 20_000
    start = time.perf_counter()
    for i in range(n):
        t = kw.admit(T0 + 7 * D + i, 1000)
        assert isinstance(t, Ticket)
        kw.settle(t, T0 + 7 * D + i, 900, 50)
    per_pair_us = (time.perf_counter() - start) / n * 1e6
    assert per_pair_us < 200, per_pair_us  # typically ~10 us; generous for shared CI machines


def test_duplicate_window_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        KeyWindows([WindowSpec("5h", 5 * H), WindowSpec("5h", 5 * H)])


# -- the model check ------------------------------------------------------------------------


class WindowsModel(RuleBasedStateMachine):
    """Random admits, settles, releases and clock moves, checked against brute-force sums."""

    @initialize(
        windows=st.lists(
            st.tuples(
                st.integers(5, 400),
                st.none() | st.integers(0, 3000),
                st.none() | st.integers(0, 8),
                st.none() | st.integers(1, 2000),
            ),
            min_size=1,
            max_size=3,
        ),
        max_concurrency=st.none() | st.integers(0, 5),
    )
    def setup(self, windows: list[tuple[int, int | None, int | None, int | None]], max_concurrency: int | None) -> None:
        self.specs = [WindowSpec(f"w{i}", s, u, r, t) for i, (s, u, r, t) in enumerate(windows)]
        self.kw = KeyWindows(self.specs, max_concurrency)
        self.max_concurrency = max_concurrency
        self.now = T0
        self.open: list[Ticket] = []
        self.events: list[tuple[float, int, int]] = []  # settled (time, cost, tokens)

    # brute force: a settle at time e counts while now < ceil(e) + L (documented bucket rule)
    def _used(self, spec: WindowSpec, now: float) -> tuple[int, int, int]:
        counted = [(c, tok) for e, c, tok in self.events if math.ceil(e) + spec.seconds > now]
        return sum(c for c, _ in counted), len(counted), sum(tok for _, tok in counted)

    def _fits(self, now: float, hold: int) -> bool:
        held = sum(t.hold for t in self.open)
        if self.max_concurrency is not None and len(self.open) + 1 > self.max_concurrency:
            return False
        for spec in self.specs:
            usd, req, tok = self._used(spec, now)
            if spec.usd is not None and usd + held + hold > spec.usd:
                return False
            if spec.requests is not None and req + len(self.open) + 1 > spec.requests:
                return False
            if spec.tokens is not None and tok + 1 > spec.tokens:
                return False
        return True

    def _waits_on_time_only(self, hold: int) -> bool:
        held = sum(t.hold for t in self.open)
        if self.max_concurrency is not None and len(self.open) + 1 > self.max_concurrency:
            return False
        return all(
            (s.usd is None or held + hold <= s.usd) and (s.requests is None or len(self.open) + 1 <= s.requests)
            for s in self.specs
        )

    @rule(dt=st.integers(0, 200) | st.floats(0, 200, allow_nan=False))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(hold=st.integers(0, 1500))
    def admit(self, hold: int) -> None:
        expected = self._fits(self.now, hold)
        d = self.kw.admit(self.now, hold)
        assert isinstance(d, Ticket) == expected, (d, expected)
        if isinstance(d, Ticket):
            self.open.append(d)
            return
        assert d.retry_after >= 1
        if self._waits_on_time_only(hold):
            assert self._fits(self.now + d.retry_after, hold)
            assert not self._fits(self.now + d.retry_after - 1, hold)

    @precondition(lambda self: self.open)
    @rule(i=st.integers(0, 100), share=st.fractions(0, 1), tokens=st.integers(0, 400))
    def settle(self, i: int, share: object, tokens: int) -> None:
        t = self.open.pop(i % len(self.open))
        c = math.floor(t.hold * share)  # real cost never exceeds the hold
        self.kw.settle(t, self.now, c, tokens)
        self.events.append((self.now, c, tokens))

    @precondition(lambda self: self.open)
    @rule(i=st.integers(0, 100))
    def release(self, i: int) -> None:
        assert self.kw.release(self.open.pop(i % len(self.open)))

    @invariant()
    def sums_match_brute_force(self) -> None:
        held = sum(t.hold for t in self.open)
        assert self.kw.held == held and self.kw.in_flight == len(self.open)
        for spec, state in zip(self.specs, self.kw.snapshot(self.now), strict=True):
            assert (state.usd_used, state.requests_used, state.tokens_used) == self._used(spec, self.now)
        caps = [s.usd - self._used(s, self.now)[0] - held for s in self.specs if s.usd is not None]
        assert self.kw.usd_headroom(self.now) == (max(min(caps), 0) if caps else None)

    @invariant()
    def no_window_ever_holds_more_than_its_cap(self) -> None:
        # exact timestamps, window (now - L, now]; checked after every step, and every settle is a step
        for spec in self.specs:
            inside = [(c, tok) for e, c, tok in self.events if self.now - spec.seconds < e <= self.now]
            if spec.usd is not None:
                assert sum(c for c, _ in inside) <= spec.usd
            if spec.requests is not None:
                assert len(inside) <= spec.requests

    @invariant()
    def reloading_from_events_gives_the_same_windows(self) -> None:
        fresh = KeyWindows(self.specs)
        fresh.load([UsageEvent(e, c, tok) for e, c, tok in self.events], self.now)
        def used(kw: KeyWindows) -> list[tuple[int, int, int]]:
            return [(s.usd_used, s.requests_used, s.tokens_used) for s in kw.snapshot(self.now)]
        assert used(fresh) == used(self.kw)


TestWindowsModel = WindowsModel.TestCase
TestWindowsModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
