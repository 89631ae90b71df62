"""Anthropic Messages upstreams (Anthropic itself and Anthropic-compatible endpoints)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bytespike.protocols.anthropic.inbound import WIRE
from bytespike.protocols.anthropic.relay import AnthropicSource
from bytespike.protocols.base import EventSource
from bytespike.protocols.hub import drop_gateway_thinking
from bytespike.protocols.json import load_answer
from bytespike.providers.base import (
    CountRequest,
    Deployment,
    ProviderSettings,
    UpstreamRequest,
    allowed_query,
    forward_headers,
)

_KEEP = (b"user-agent", b"x-stainless-helper-method", b"x-claude-code-session-id")
_QUERY = ("beta",)  # the only query parameter Messages takes (the SDKs' ``?beta=true``)
_GATEWAY_SIGNED = b"bytespike:1:"


def request(provider: ProviderSettings, path: str, query: str, inbound: Mapping[bytes, bytes],
            body: bytes) -> UpstreamRequest:
    """Every ``anthropic-*`` header goes up verbatim (version, beta list, and any future ones)."""
    keep = _KEEP + tuple(k for k in inbound if k.startswith(b"anthropic-"))
    headers = forward_headers(inbound, provider, keep)
    headers.setdefault("anthropic-version", "2023-06-01")
    headers["x-api-key"] = provider.api_key
    url = f"{provider.base_url}{path}"
    query = allowed_query(query, _QUERY)
    if query:
        url += "?" + query
    return UpstreamRequest(url, headers, body)


class AnthropicType:
    name = "anthropic"
    wire = WIRE
    caveats: tuple[str, ...] = ()

    def native_request(self, req: dict[str, Any], body: bytes | None, headers: Mapping[bytes, bytes], query: str,
                       provider: ProviderSettings, dep: Deployment, stream: bool) -> UpstreamRequest:
        if body is not None and _GATEWAY_SIGNED in body:
            # Thinking this gateway signed for another vendor would be rejected by Anthropic.
            cleaned = drop_gateway_thinking(req)
            if cleaned is not None:
                req, body = cleaned, None
        if body is None or req.get("model") != dep.model:
            body = orjson.dumps({**req, "model": dep.model})
        return request(provider, "/v1/messages", query, headers, body)

    def hub_request(self, hub: dict[str, Any], provider: ProviderSettings, dep: Deployment,
                    stream: bool) -> tuple[UpstreamRequest, dict[str, str] | None]:
        return request(provider, "/v1/messages", "", {}, orjson.dumps({**hub, "model": dep.model})), None

    def source(self, model: str, names: dict[str, str] | None) -> EventSource:
        return AnthropicSource()

    def message_from(self, raw: bytes, model: str, names: dict[str, str] | None) -> dict[str, Any]:
        return load_answer(raw)

    def count_request(self, hub: dict[str, Any], body: bytes, headers: Mapping[bytes, bytes], query: str,
                      provider: ProviderSettings, dep: Deployment) -> CountRequest | None:
        up_body = body if hub.get("model") == dep.model else orjson.dumps({**hub, "model": dep.model})
        return CountRequest(request(provider, "/v1/messages/count_tokens", query, headers, up_body), _same)

    def owner(self, model_id: str) -> str | None:
        return "anthropic" if model_id.startswith("claude") else None


def _same(raw: bytes) -> bytes:
    return raw


TYPE = AnthropicType()
