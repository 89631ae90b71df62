"""Cursor pagination: a list answers one page and an opaque cursor naming where the next starts."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def encode(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode(cursor: str | None, arity: int) -> list[Any] | None:
    """The position a cursor names; ValueError for anything this module did not make."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        raise ValueError("cursor: not a cursor this API gave out") from None
    if not isinstance(position, list) or len(position) != arity or \
            not all(isinstance(p, (int, float, str)) and not isinstance(p, bool) for p in position):
        raise ValueError("cursor: not a cursor this API gave out")
    return position


def page(rows: list[dict[str, Any]], limit: int, position: Any) -> Page:
    """``rows`` fetched with ``limit + 1``: the extra row only says there is a next page."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode(position(rows[-1])) if more and rows else None)
