"""``count_tokens`` for every model: the vendor's counter where its upstream type has one, else a
local estimate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from bytespike.errors import GatewayError
from bytespike.gateway.catalogue import Resolved
from bytespike.providers import TYPES
from bytespike.state import State

_COUNT_FIELDS = ("messages", "system", "tools", "tool_choice", "thinking", "output_config", "cache_control",
                 "mcp_servers", "context_management")


async def count(state: State, resolved: Resolved, hub: dict[str, Any], body: bytes,
                headers: Mapping[bytes, bytes], query: bytes, wire: str) -> tuple[int, bytes]:
    """``hub``: the request as a Messages request; ``body``: the client's bytes in its ``wire`` (a
    same-wire counter may take them unchanged; any other gets the hub request)."""
    dep = resolved.model.deployments[0]
    provider = state.settings.providers[dep.provider]
    utype = TYPES[provider.type]
    if utype.wire != wire:
        body, headers, query = orjson.dumps(hub), {}, b""
    counted = utype.count_request(hub, body, headers, query.decode("latin-1") if query else "", provider, dep)
    if counted is None:
        return 200, orjson.dumps({"input_tokens": estimate_tokens(hub)})
    resp = await state.upstreams.open(dep.provider, counted.request)
    raw = await resp.read()
    if resp.status != 200:
        raise resp.error(raw)
    try:
        return 200, counted.convert(raw)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise GatewayError("api_error", "the upstream provider sent an unreadable token count") from None


def estimate_tokens(req: dict[str, Any]) -> int:
    """Local estimate for vendors without a counting endpoint: one token per 4 characters of the
    JSON-encoded prompt fields (text, tool schemas, tool results), rounded up, plus 3 per message."""
    chars = sum(len(orjson.dumps(req[f])) for f in _COUNT_FIELDS if f in req)
    return math.ceil(chars / 4) + 3 * len(req.get("messages") or [])
