"""JSON at the wire's edge: a client's request body, an upstream's whole answer."""

from __future__ import annotations

import json
from typing import Any

import orjson

from bytespike.errors import GatewayError, bad_request, shown


def load_object(body: bytes) -> dict[str, Any]:
    """A client's request body as a JSON object with a ``model`` string, or a 400 saying why not."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc.args[0] if exc.args else exc}") from None
    if not isinstance(req, dict):
        raise bad_request("request body must be a JSON object")
    model = req.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: field required (a model id string)", param="model")
    return req


def refuse_duplicate_keys(body: bytes) -> None:
    """400 if any object in ``body`` names a key twice. Readers disagree on which one wins (this
    gateway's parser keeps the last, some servers the first), so a body forwarded as sent must
    have only one reading."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):
            seen: set[str] = set()
            dup = next(k for k, _ in items if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise bad_request(f"{shown(dup)}: the same key appears twice in one JSON object", param=dup)
        return out

    try:
        json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # not JSON the strict reader takes: orjson already judged it
        return


def load_answer(raw: bytes) -> dict[str, Any]:
    """An upstream's whole answer as a JSON object; a 500 (the upstream's fault) otherwise."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError("api_error", "the upstream provider sent an unreadable answer") from None
    if not isinstance(data, dict):
        raise GatewayError("api_error", "the upstream provider sent an unexpected answer")
    return data
