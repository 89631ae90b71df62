"""Exact money: parsing, formatting, costs, holds and the lowering of max_tokens."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bytespike.billing.money import (
    MIN_USEFUL_OUTPUT_TOKENS,
    Price,
    Usage,
    affordable_max_tokens,
    cost,
    estimate_input_tokens,
    format_usd,
    hold_amount,
    parse_multiplier,
    parse_usd,
)

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"

SONNET = Price.from_config({"input": 3, "output": 15, "cache_write": 3.75, "cache_write_1h": 6, "cache_read": 0.3})
HAIKU = Price.from_config({"input": 1, "output": 5, "cache_write": 1.25, "cache_write_1h": 2, "cache_read": 0.1})
OPUS = Price.from_config({"input": 5, "output": 25, "cache_write": 6.25, "cache_write_1h": 10, "cache_read": 0.5})

BILLION = 10**9
MILLION = 10**6


def _by_hand(usd_per_million: dict[str, Fraction], tokens: dict[str, int], multiplier: Fraction) -> int:
    """The billing rule written out: sum tokens x USD/M, / 1e6, x multiplier, to nano, half up, once."""
    usd = sum(usd_per_million[k] * tokens[k] for k in tokens) / MILLION * multiplier
    return math.floor(usd * BILLION + Fraction(1, 2))


# -- parse / format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_value", "nano"),
    [
        ("3.5", 3_500_000_000),
        (3, 3_000_000_000),
        (0.1, 100_000_000),
        (Decimal("0.000000001"), 1),
        ("1e-9", 1),
        ("1.50000000000", 1_500_000_000),
        ("0", 0),
    ],
)
def test_parse_usd_is_exact(given_value: object, nano: int) -> None:
    assert parse_usd(given_value) == nano  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["-1", -0.5, "NaN", "nan", "inf", float("inf"), "0.0000000001", 1e-10, "abc", "", True, None])
def test_parse_usd_rejects_and_names_the_value(bad: object) -> None:
    with pytest.raises(ValueError) as e:
        parse_usd(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(e.value)


@pytest.mark.parametrize(("nano", "text"), [(3_500_000_000, "3.5"), (1, "0.000000001"), (-2_000_000_000, "-2"), (0, "0"),
                                            (-1, "-0.000000001"), (10_000_000_010, "10.00000001")])
def test_format_usd_writes_plain_decimals(nano: int, text: str) -> None:
    assert format_usd(nano) == text


@given(st.integers(min_value=-(10**20), max_value=10**20))
def test_format_then_parse_round_trips(nano: int) -> None:
    text = format_usd(nano)
    assert "e" not in text.lower()
    if nano >= 0:
        assert parse_usd(text) == nano
    else:
        assert text.startswith("-") and parse_usd(text[1:]) == -nano


@given(st.decimals(min_value=0, max_value=10**12, places=9, allow_nan=False, allow_infinity=False))
def test_parse_then_format_round_trips(d: Decimal) -> None:
    assert Decimal(format_usd(parse_usd(d))) == d
    assert parse_usd(format_usd(parse_usd(d))) == parse_usd(d)


def test_multiplier_accepts_decimal_fraction_text_and_rejects_negative() -> None:
    assert parse_multiplier(Decimal("1.5")) == parse_multiplier("3/2") == parse_multiplier(1.5) == Fraction(3, 2)
    with pytest.raises(ValueError):
        parse_multiplier("-1")
    with pytest.raises(ValueError):
        parse_multiplier("lots")


# -- prices and usage ---------------------------------------------------------------------


def test_price_is_nano_usd_per_million_tokens() -> None:
    assert SONNET == Price(3 * BILLION, 15 * BILLION, 3_750_000_000, 6 * BILLION, 300_000_000)


def test_missing_cache_prices_follow_anthropic_ratios() -> None:
    p = Price.from_config({"input": Decimal("3"), "output": Decimal("15")})
    assert (p.cache_write, p.cache_write_1h, p.cache_read) == (3_750_000_000, 6_000_000_000, 300_000_000)
    assert Price.from_config({"input": 5, "output": 25}) == OPUS
    assert Price.from_config({"input": 1, "output": 5}) == HAIKU


@pytest.mark.parametrize("bad", [{"output": 15}, {"input": 3}, {"input": 3, "output": 15, "cache_rd": 1},
                                 {"input": -3, "output": 15}])
def test_bad_price_config_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Price.from_config(bad)


def test_usage_splits_cache_writes_by_ttl() -> None:
    u = Usage.from_anthropic({
        "input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60},
    })
    assert u == Usage(10, 20, 30, 40, 60)
    assert u.total_tokens == 160


def test_usage_without_split_counts_all_writes_as_5m_and_nulls_as_zero() -> None:
    assert Usage.from_anthropic({"input_tokens": 5, "cache_creation_input_tokens": 7, "output_tokens": None}) == Usage(
        5, 0, 0, 7, 0
    )
    assert Usage.from_anthropic(None) == Usage()
    assert Usage.from_anthropic({"cache_creation_input_tokens": 9, "cache_creation": None}) == Usage(0, 0, 0, 9, 0)


def test_usage_split_missing_tokens_are_billed_as_5m_writes() -> None:
    u = Usage.from_anthropic({"cache_creation_input_tokens": 100, "cache_creation": {"ephemeral_1h_input_tokens": 30}})
    assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (70, 30)


def _recorded_usages(name: str) -> list[dict]:
    text = (RECORDED / "anthropics__anthropic-sdk-python/tests/lib/streaming/fixtures" / name).read_text()
    out = []
    for line in text.splitlines():
        if line.startswith("data: "):
            event = orjson.loads(line[6:])
            usage = event.get("usage") or event.get("message", {}).get("usage")
            if usage:
                out.append(usage)
    return out


def test_usage_from_recorded_stream_start_and_final_delta() -> None:
    start, final = _recorded_usages("message_delta_fields_response.txt")
    assert Usage.from_anthropic(start) == Usage(25, 1, 5, 10, 0)
    assert Usage.from_anthropic(final) == Usage(40, 8, 7, 12, 0)
    # Sonnet at 1x: 40*3 + 8*15 + 7*0.3 + 12*3.75 = 287.1 USD per million tokens
    assert cost(Usage.from_anthropic(final), SONNET, 1) == 287_100


# -- cost ---------------------------------------------------------------------------------

ALL_KINDS = {"input": 1234, "output": 567, "cache_read": 8901, "cache_write": 2345, "cache_write_1h": 678}


def _usage(t: dict[str, int]) -> Usage:
    return Usage(t["input"], t["output"], t["cache_read"], t["cache_write"], t["cache_write_1h"])


@pytest.mark.parametrize(
    ("price", "usd_per_million", "multiplier", "expected_nano"),
    [
        # 3*1234 + 15*567 + 0.3*8901 + 3.75*2345 + 6*678 = 27739.05 -> 0.02773905 USD x 1.5
        (SONNET, {"input": 3, "output": 15, "cache_read": "3/10", "cache_write": "15/4", "cache_write_1h": 6},
         "1.5", 41_608_575),
        # 1*1234 + 5*567 + 0.1*8901 + 1.25*2345 + 2*678 = 9246.35 -> x 0.8 = 0.00739708 USD
        (HAIKU, {"input": 1, "output": 5, "cache_read": "1/10", "cache_write": "5/4", "cache_write_1h": 2},
         Decimal("0.8"), 7_397_080),
        # 5*1234 + 25*567 + 0.5*8901 + 6.25*2345 + 10*678 = 46231.75 -> x 1.5 = 0.069347625 USD
        (OPUS, {"input": 5, "output": 25, "cache_read": "1/2", "cache_write": "25/4", "cache_write_1h": 10},
         Fraction(3, 2), 69_347_625),
    ],
)
def test_cost_of_every_token_kind_matches_hand_computation(
    price: Price, usd_per_million: dict, multiplier: object, expected_nano: int
) -> None:
    per_m = {k: Fraction(v) for k, v in usd_per_million.items()}
    assert _by_hand(per_m, ALL_KINDS, Fraction(str(multiplier))) == expected_nano
    assert cost(_usage(ALL_KINDS), price, multiplier) == expected_nano  # type: ignore[arg-type]


def test_cost_of_a_long_opus_session_with_multiplier_point_eight() -> None:
    tokens = {"input": 3, "output": 1_000, "cache_read": 150_000, "cache_write": 10_000, "cache_write_1h": 2_000}
    # 15 + 25_000 + 75_000 + 62_500 + 20_000 = 182_515 USD per million tokens -> 0.182515 USD x 0.8
    assert cost(_usage(tokens), OPUS, "0.8") == 146_012_000


@pytest.mark.parametrize(("multiplier", "nano"), [("0.0005", 1), ("0.0015", 2), ("0.0025", 3), ("0.00049", 0)])
def test_cost_rounds_half_up_not_to_even(multiplier: str, nano: int) -> None:
    # one Haiku input token is 1000 nano-USD; x 0.0025 = 2.5 nano -> 3 (banker's rounding would say 2)
    assert cost(Usage(input_tokens=1), HAIKU, multiplier) == nano


def test_cost_rounds_once_at_the_end_not_per_token_kind() -> None:
    # input 1000 x 0.0005 = 0.5 and output 5000 x 0.0005 = 2.5: once -> 3, per kind it would be 1 + 3
    assert cost(Usage(input_tokens=1, output_tokens=1), HAIKU, "0.0005") == 3


def test_cost_at_sub_nano_prices_is_exact() -> None:
    price = Price.from_config({"input": "0.000000001", "output": "0.000000003"})  # 1 and 3 nano-USD per million
    assert cost(Usage(input_tokens=499_999), price, 1) == 0
    assert cost(Usage(input_tokens=500_000), price, 1) == 1
    assert cost(Usage(output_tokens=1_000_000), price, Fraction(1, 3)) == 1


usages = st.builds(Usage, *(st.integers(0, 10**8) for _ in range(5)))
prices = st.builds(Price, *(st.integers(0, 10**11) for _ in range(5)))
multipliers = st.fractions(min_value=0, max_value=10, max_denominator=1000)


@given(usages, prices, multipliers)
def test_cost_is_a_non_negative_int(u: Usage, p: Price, m: Fraction) -> None:
    c = cost(u, p, m)
    assert type(c) is int and c >= 0


@given(usages, usages, prices, multipliers)
def test_cost_is_monotone_in_tokens(a: Usage, extra: Usage, p: Price, m: Fraction) -> None:
    assert cost(a + extra, p, m) >= cost(a, p, m)


@given(usages, prices, multipliers, multipliers)
def test_cost_is_monotone_in_multiplier(u: Usage, p: Price, m1: Fraction, m2: Fraction) -> None:
    lo, hi = sorted((m1, m2))
    assert cost(u, p, lo) <= cost(u, p, hi)


@given(usages, usages, prices, multipliers)
def test_cost_is_additive_within_one_nano(a: Usage, b: Usage, p: Price, m: Fraction) -> None:
    assert abs(cost(a + b, p, m) - cost(a, p, m) - cost(b, p, m)) <= 1


# -- holds and lowering max_tokens ---------------------------------------------------------


def test_estimate_input_tokens_is_bytes_over_three_plus_overhead() -> None:
    assert estimate_input_tokens(0) == 512
    assert estimate_input_tokens(3) == 513
    assert estimate_input_tokens(4) == 514
    assert estimate_input_tokens(300_000) == 100_512


def test_hold_prices_input_at_the_dearest_input_rate_and_rounds_up() -> None:
    # 1000 input tokens at the 1h write rate (6) + 64000 output at 15 = 966_000 USD/M -> 0.966 USD
    assert hold_amount(1000, 64_000, SONNET, 1) == 966_000_000
    assert hold_amount(1, 0, HAIKU, "0.0005") == 1  # 2000 nano x 0.0005 = 1
    assert hold_amount(1, 0, HAIKU, "0.0001") == 1  # 0.2 nano rounds up


@given(usages, st.integers(0, 10**8), prices, multipliers)
def test_hold_covers_any_usage_within_the_estimate(u: Usage, max_tokens: int, p: Price, m: Fraction) -> None:
    input_side = u.input_tokens + u.cache_read_tokens + u.cache_write_5m_tokens + u.cache_write_1h_tokens
    assert hold_amount(input_side, max(max_tokens, u.output_tokens), p, m) >= cost(u, p, m)


def test_three_dollars_cover_a_full_claude_code_request_on_opus() -> None:
    est = estimate_input_tokens(150_000)  # a typical Claude Code request body: 50_512 tokens
    # 50_512 x 10 + 64_000 x 25 = 2_105_120 USD per million tokens -> 2.10512 USD
    assert hold_amount(est, 64_000, OPUS, 1) == 2_105_120_000
    assert affordable_max_tokens(parse_usd(3), est, OPUS, 1, 64_000) == 64_000


def test_one_dollar_keeps_claude_code_working_with_lowered_max_tokens() -> None:
    available = parse_usd(1)
    est = estimate_input_tokens(150_000)
    n = affordable_max_tokens(available, est, OPUS, 1, 64_000)
    # (1 USD x 1e6 - 50_512 x 10) / 25 = 19_795.2 -> 19_795 output tokens
    assert n == 19_795
    assert n is not None and MIN_USEFUL_OUTPUT_TOKENS <= n < 64_000
    assert hold_amount(est, n, OPUS, 1) <= available < hold_amount(est, n + 1, OPUS, 1)


def test_full_request_is_returned_when_affordable() -> None:
    assert affordable_max_tokens(parse_usd(100), 1000, SONNET, 1, 64_000) == 64_000


def test_below_a_useful_answer_is_none() -> None:
    est = 1000
    just_enough = hold_amount(est, 1024, SONNET, 1)
    assert affordable_max_tokens(just_enough, est, SONNET, 1, 64_000) == 1024
    assert affordable_max_tokens(just_enough - 1, est, SONNET, 1, 64_000) is None
    assert affordable_max_tokens(-5, est, SONNET, 1, 64_000) is None


def test_small_requests_are_not_lowered_below_their_own_max_tokens() -> None:
    est = 100
    exact = hold_amount(est, 200, SONNET, 1)
    assert affordable_max_tokens(exact, est, SONNET, 1, 200) == 200
    assert affordable_max_tokens(exact - 1, est, SONNET, 1, 200) is None


@given(st.integers(-(10**9), 10**11), st.integers(0, 10**6), prices, multipliers, st.integers(1, 200_000))
def test_affordable_max_tokens_is_the_largest_that_fits(
    available: int, est: int, p: Price, m: Fraction, requested: int
) -> None:
    n = affordable_max_tokens(available, est, p, m, requested)
    if n is None:
        assert hold_amount(est, min(requested, MIN_USEFUL_OUTPUT_TOKENS), p, m) > available
    else:
        assert min(requested, MIN_USEFUL_OUTPUT_TOKENS) <= n <= requested
        assert hold_amount(est, n, p, m) <= available
        if n < requested:
            assert hold_amount(est, n + 1, p, m) > available
