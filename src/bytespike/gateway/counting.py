"""``count_tokens`` for every model: the vendor's counter where it has one, else a local estimate."""

from __future__ import annotations

import math
from typing import Any

import orjson

from bytespike.errors import GatewayError
from bytespike.gateway.catalogue import Resolved
from bytespike.gateway.plan import dialect
from bytespike.providers import anthropic as anthropic_provider
from bytespike.providers import gemini as gemini_provider
from bytespike.state import State

_COUNT_FIELDS = ("messages", "system", "tools", "tool_choice", "thinking", "output_config", "cache_control",
                 "mcp_servers", "context_management")


async def count(state: State, resolved: Resolved, req: dict[str, Any], body: bytes,
                headers: dict[bytes, bytes], query: bytes) -> tuple[int, bytes]:
    dep = resolved.model.deployments[0]
    provider = state.settings.providers[dep.provider]
    if provider.type == "anthropic":
        up_body = body if req.get("model") == dep.model else orjson.dumps({**req, "model": dep.model})
        upstream = anthropic_provider.request(provider, "/v1/messages/count_tokens",
                                              query.decode("latin-1") if query else "", headers, up_body)
        return await _relay(state, dep.provider, upstream, lambda raw: raw)
    if provider.type == "gemini":
        from bytespike.protocols.gemini import upstream as gemini

        greq = gemini.to_gemini_request({**req, "max_tokens": 1}, dialect(gemini.GeminiDialect, provider, dep, gemini))
        greq.pop("generationConfig", None)
        greq["model"] = f"models/{dep.model}"
        upstream = gemini_provider.count_request(provider, dep.model, orjson.dumps({"generateContentRequest": greq}))

        def convert(raw: bytes) -> bytes:
            data = orjson.loads(raw)
            return orjson.dumps({"input_tokens": int(data.get("totalTokens", 0))})

        return await _relay(state, dep.provider, upstream, convert)
    return 200, orjson.dumps({"input_tokens": estimate_tokens(req)})


def estimate_tokens(req: dict[str, Any]) -> int:
    """Local estimate for vendors without a counting endpoint: one token per 4 characters of the
    JSON-encoded prompt fields (text, tool schemas, tool results), rounded up, plus 3 per message."""
    chars = sum(len(orjson.dumps(req[f])) for f in _COUNT_FIELDS if f in req)
    return math.ceil(chars / 4) + 3 * len(req.get("messages") or [])


async def _relay(state: State, provider: str, upstream, convert) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    resp = await state.upstreams.open(provider, upstream)
    raw = await resp.read()
    if resp.status != 200:
        raise resp.error(raw)
    try:
        return 200, convert(raw)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise GatewayError("api_error", "the upstream provider sent an unreadable token count") from None
