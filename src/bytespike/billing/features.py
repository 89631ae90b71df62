"""Premium request features: found in the request, refused unless the key's group offers them,
priced as the group says when it does.

A feature that costs the operator more than plain tokens must never ride along at plain-token
prices: server tools (web search, web fetch, code execution) are billed per use from the
answer's ``usage.server_tool_use``; the priority service tier, fast mode, MCP servers and the
1M-token context beta multiply the request's charge by the group's multiplier for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from bytespike.config import GroupConfig
from bytespike.errors import GatewayError

SERVER_TOOL_TYPES = ("web_search", "web_fetch", "code_execution")
DEFAULT_MAX_USES = 20
"""Server tool uses a request is held for when its tool sets no ``max_uses``."""


@dataclass(frozen=True, slots=True)
class Premium:
    features: tuple[str, ...]
    multiplier: Decimal  # on the request's token charge
    tool_uses: int  # server tool uses the hold covers
    tool_price: Fraction  # nano-USD per server tool use


NONE = Premium((), Decimal(1), 0, Fraction(0))


def _betas(headers: Mapping[bytes, bytes]) -> str:
    return headers.get(b"anthropic-beta", b"").decode("latin-1").lower()


def found(req: dict[str, Any], headers: Mapping[bytes, bytes]) -> tuple[tuple[str, ...], int]:
    """(premium features the request asks for, the server tool uses it allows)."""
    features: list[str] = []
    uses = 0
    tools = req.get("tools")
    for t in tools if isinstance(tools, list) else ():
        kind = t.get("type") if isinstance(t, dict) else None
        if isinstance(kind, str) and kind.startswith(SERVER_TOOL_TYPES):
            cap = t.get("max_uses")
            uses += cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else DEFAULT_MAX_USES
    if isinstance(req.get("web_search_options"), dict):
        uses += 1
    if uses:
        features.append("server_tools")
    betas = _betas(headers)
    if req.get("service_tier") == "priority":
        features.append("priority_tier")
    if req.get("speed") == "fast" or "fast-mode" in betas:
        features.append("fast_mode")
    if req.get("mcp_servers") or "mcp-client" in betas:
        features.append("mcp_servers")
    if "context-1m" in betas:
        features.append("context_1m")
    return tuple(features), uses


def premium(req: dict[str, Any], headers: Mapping[bytes, bytes], group: GroupConfig | None) -> Premium:
    """The request's premium features as its group prices them; 403 for one the group does not offer."""
    features, uses = found(req, headers)
    if not features:
        return NONE
    offered = group.features if group is not None else {}
    for f in features:
        if f not in offered:
            raise GatewayError("permission_error",
                               f"this request uses {f.replace('_', ' ')}, which this key's group does not offer",
                               param=f)
    multiplier = Decimal(1)
    for f in features:
        if f != "server_tools":
            multiplier *= offered[f]
    tool_price = Fraction(offered["server_tools"]) * 10**9 / 1000 if "server_tools" in features else Fraction(0)
    return Premium(features, multiplier, uses, tool_price)


def tool_uses(usage: Mapping[str, Any] | None) -> int:
    """Server tool uses an answer reports (``usage.server_tool_use``: web search, web fetch, ...)."""
    counts = usage.get("server_tool_use") if isinstance(usage, Mapping) else None
    if not isinstance(counts, Mapping):
        return 0
    return sum(v for v in counts.values() if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10**6)


def tool_charge(p: Premium, uses: int) -> int:
    """nano-USD for ``uses`` server tool uses, rounded up."""
    return math.ceil(p.tool_price * uses)
