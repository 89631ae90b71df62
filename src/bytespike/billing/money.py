"""Exact money: integer nano-USD amounts, token prices, request costs and admission holds.

Every amount is an ``int`` of nano-USD (1 USD = 10**9 nano-USD). Intermediate arithmetic is done
with ``Fraction`` and rounded once, so no total ever drifts the way floats do.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, TypeAlias

NANO_PER_USD = 1_000_000_000
PRICE_UNIT_TOKENS = 1_000_000
"""Prices are quoted per this many tokens."""

MIN_USEFUL_OUTPUT_TOKENS = 1024
"""Below this many output tokens a lowered request is not worth sending (SPEC section 4)."""

INPUT_BYTES_PER_TOKEN = 3
INPUT_OVERHEAD_TOKENS = 512
"""Constants of :func:`estimate_input_tokens`."""

Multiplier: TypeAlias = Decimal | Fraction | str | int | float

_DEFAULT_RATIOS = {"cache_write": Fraction(5, 4), "cache_write_1h": Fraction(2), "cache_read": Fraction(1, 10)}


def _to_decimal(x: object, what: str) -> Decimal:
    if isinstance(x, bool) or not isinstance(x, Decimal | int | float | str):
        raise ValueError(f"{what} must be a number, got {x!r}")
    try:
        d = x if isinstance(x, Decimal) else Decimal(str(x).strip())
    except InvalidOperation:
        raise ValueError(f"{what} is not a number: {x!r}") from None
    if not d.is_finite():
        raise ValueError(f"{what} must be finite, got {x!r}")
    return d


def parse_usd(x: str | int | float | Decimal) -> int:
    """USD amount -> nano-USD, exactly (floats go through ``str`` so ``0.1`` means 0.1).

    Refuses negative, non-finite and non-numeric values and any value with a non-zero digit past
    the 9th decimal (it has no exact nano-USD form); the error names the value.
    """
    d = _to_decimal(x, "USD amount")
    if d < 0:
        raise ValueError(f"USD amount must not be negative, got {x!r}")
    nano = Fraction(d) * NANO_PER_USD
    if nano.denominator != 1:
        raise ValueError(f"USD amount has more than 9 decimals (finer than 1 nano-USD): {x!r}")
    return int(nano)


def format_usd(nano: int) -> str:
    """nano-USD -> plain decimal string without trailing zeros: 3.5, 0.000000001, -2."""
    if isinstance(nano, bool) or not isinstance(nano, int):
        raise TypeError(f"nano-USD amount must be an int, got {nano!r}")
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


def parse_multiplier(m: Multiplier) -> Fraction:
    """A group's price multiplier as an exact fraction (``"3/2"`` and ``"1.5"`` both work)."""
    if isinstance(m, (Decimal, str, int)) and not isinstance(m, bool):
        return _parse_multiplier_cached(m)
    return _parse_multiplier(m)


@functools.lru_cache(maxsize=256)
def _parse_multiplier_cached(m: Decimal | str | int) -> Fraction:
    return _parse_multiplier(m)


def _parse_multiplier(m: Multiplier) -> Fraction:
    if isinstance(m, Fraction):
        f = m
    elif isinstance(m, str):
        try:
            f = Fraction(m.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"price multiplier is not a number: {m!r}") from None
    else:
        f = Fraction(_to_decimal(m, "price multiplier"))
    if f < 0:
        raise ValueError(f"price multiplier must not be negative, got {m!r}")
    return f


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


@dataclass(frozen=True)
class Price:
    """A model's prices, each in integer nano-USD per million tokens."""

    input: int
    output: int
    cache_write: int
    cache_write_1h: int
    cache_read: int

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_count(f"price {f.name}", getattr(self, f.name))

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any]) -> Price:
        """Build from USD-per-million values as written in the configuration.

        ``input`` and ``output`` are required. Missing cache prices follow Anthropic's published
        ratios to the input price: ``cache_write`` (5 minutes) 1.25x, ``cache_write_1h`` 2x,
        ``cache_read`` 0.1x, rounded half up to the nano-USD per million tokens.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"unknown price field(s) {unknown}; expected {sorted(known)}")
        for required in ("input", "output"):
            if mapping.get(required) is None:
                raise ValueError(f"price '{required}' is required (USD per million tokens)")
        values: dict[str, int] = {}
        for name in known:
            raw = mapping.get(name)
            if raw is not None:
                try:
                    values[name] = parse_usd(raw)
                except ValueError as e:
                    raise ValueError(f"price '{name}': {e}") from None
        for name, ratio in _DEFAULT_RATIOS.items():
            values.setdefault(name, _round_half_up(values["input"] * ratio))
        return cls(**values)

    @property
    def max_input_rate(self) -> int:
        """The dearest rate an input-side token can be billed at (normally the 1 h cache write)."""
        return max(self.input, self.cache_write, self.cache_write_1h, self.cache_read)


@dataclass(frozen=True)
class Usage:
    """Tokens of one response, split the way Anthropic bills them (input excludes cache tokens)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_count(f.name, getattr(self, f.name))

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any] | None) -> Usage:
        """From an Anthropic ``usage`` object; missing or null counts are 0.

        ``cache_creation_input_tokens`` is split by ``cache_creation.ephemeral_5m_input_tokens`` /
        ``ephemeral_1h_input_tokens`` when that object is present; tokens the split does not
        account for are billed as 5-minute writes. Without the object all writes are 5-minute.
        """
        u = usage or {}

        def count(m: Mapping[str, Any], key: str) -> int:
            v = m.get(key)
            if v is None:
                return 0
            _check_count(key, v)
            return int(v)

        written = count(u, "cache_creation_input_tokens")
        split = u.get("cache_creation")
        if isinstance(split, Mapping):
            w1h = count(split, "ephemeral_1h_input_tokens")
            w5m = max(count(split, "ephemeral_5m_input_tokens"), written - w1h)
        else:
            w1h, w5m = 0, written
        return cls(
            input_tokens=count(u, "input_tokens"),
            output_tokens=count(u, "output_tokens"),
            cache_read_tokens=count(u, "cache_read_input_tokens"),
            cache_write_5m_tokens=w5m,
            cache_write_1h_tokens=w1h,
        )


def cost(usage: Usage, price: Price, multiplier: Multiplier) -> int:
    """The charge for ``usage`` in nano-USD.

    Rule: exact = multiplier x (input x P_input + output x P_output + cache_read x P_cache_read
    + cache_write_5m x P_cache_write + cache_write_1h x P_cache_write_1h) / 1,000,000, with each
    P in nano-USD per million tokens, computed as an exact rational number; the result is that
    value rounded once, half up, to a whole nano-USD: floor(exact + 1/2).
    """
    m = parse_multiplier(multiplier)
    raw = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_5m_tokens * price.cache_write
        + usage.cache_write_1h_tokens * price.cache_write_1h
    )
    return _round_half_up(Fraction(raw, PRICE_UNIT_TOKENS) * m)


def hold_amount(input_estimate_tokens: int, max_tokens: int, price: Price, multiplier: Multiplier) -> int:
    """The most a request can cost, held before it goes upstream (nano-USD, rounded up).

    Every estimated input token is priced at the dearest input-side rate and ``max_tokens`` at
    the output rate (thinking tokens are output tokens and fit inside ``max_tokens``).
    """
    _check_count("input_estimate_tokens", input_estimate_tokens)
    _check_count("max_tokens", max_tokens)
    m = parse_multiplier(multiplier)
    raw = input_estimate_tokens * price.max_input_rate + max_tokens * price.output
    return math.ceil(Fraction(raw, PRICE_UNIT_TOKENS) * m)


def estimate_input_tokens(body_len_bytes: int) -> int:
    """A deliberately high input token count from the request body's size in bytes.

    ceil(bytes / 3) + 512: JSON-encoded prompts run near 4 bytes a token in English and code and
    rarely under 3 in any script, and 512 tokens cover message framing and the tool-use system
    prompt. Images and documents count by their base64 bytes, which far exceeds their tokens.
    Content fetched by URL is not in the body and is not covered.
    """
    _check_count("body_len_bytes", body_len_bytes)
    return -(-body_len_bytes // INPUT_BYTES_PER_TOKEN) + INPUT_OVERHEAD_TOKENS


def affordable_max_tokens(
    available: int,
    input_estimate: int,
    price: Price,
    multiplier: Multiplier,
    requested_max_tokens: int,
) -> int | None:
    """``max_tokens`` to send given ``available`` nano-USD (balance less open holds, or headroom).

    Returns ``requested_max_tokens`` when its hold fits; otherwise the largest lower value whose
    hold fits, provided it is at least ``min(1024, requested_max_tokens)``; otherwise ``None``
    (the caller answers 402, or 429 near a window's USD cap).
    """
    _check_count("input_estimate", input_estimate)
    _check_count("requested_max_tokens", requested_max_tokens)
    if hold_amount(input_estimate, requested_max_tokens, price, multiplier) <= available:
        return requested_max_tokens
    m = parse_multiplier(multiplier)
    if m == 0 or price.output == 0 or available < 0:
        return None  # the hold does not depend on max_tokens (or nothing is available)
    # ceil(h) <= available  <=>  h <= available, for integer available:
    # m * (input * r_in + n * r_out) / 1e6 <= available
    budget = Fraction(available * PRICE_UNIT_TOKENS) / m - input_estimate * price.max_input_rate
    n = math.floor(budget / price.output)
    if n < min(MIN_USEFUL_OUTPUT_TOKENS, requested_max_tokens):
        return None
    return min(n, requested_max_tokens)
