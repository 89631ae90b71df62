"""OpenAI Chat Completions upstreams (OpenAI and any compatible server)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bytespike.protocols.base import EventSource
from bytespike.protocols.json import load_answer
from bytespike.protocols.openai_chat import upstream as chat
from bytespike.protocols.openai_chat.inbound.protocol import WIRE, include_usage
from bytespike.providers.base import (
    CountRequest,
    Deployment,
    ProviderSettings,
    UpstreamRequest,
    dialect,
    forward_headers,
)

_KEEP = (b"user-agent",)
"""Not ``openai-organization`` or ``openai-project``: which of the operator's projects pays is the
operator's choice (``providers.NAME.headers``), never the client's."""


def request(provider: ProviderSettings, inbound: Mapping[bytes, bytes], body: bytes,
            dropped: tuple[str, ...] = ()) -> UpstreamRequest:
    headers = forward_headers(inbound, provider, _KEEP)
    headers["authorization"] = f"Bearer {provider.api_key}"
    return UpstreamRequest(f"{provider.base_url}/chat/completions", headers, body, dropped)


class OpenAIType:
    name = "openai"
    wire = WIRE
    caveats: tuple[str, ...] = tuple(chat.CAVEATS)

    def native_request(self, req: dict[str, Any], body: bytes | None, headers: Mapping[bytes, bytes], query: str,
                       provider: ProviderSettings, dep: Deployment, stream: bool) -> UpstreamRequest:
        # The model family's parameter rules (gpt-5*/o-series: max_completion_tokens, default sampling).
        fitted, dropped = chat.fit_chat_body(req, dialect(chat.ChatDialect, provider, dep, chat))
        changed = body is None or req.get("model") != dep.model or fitted != req
        req = fitted
        if stream and not include_usage(req):
            # Usage arrives only when asked for; the relay holds the chunk back if the client did not ask.
            req = {**req, "stream_options": {**(req.get("stream_options") or {}), "include_usage": True}}
            changed = True
        if changed or body is None:
            body = orjson.dumps({**req, "model": dep.model})
        return request(provider, headers, body, tuple(dropped))

    def hub_request(self, hub: dict[str, Any], provider: ProviderSettings, dep: Deployment,
                    stream: bool) -> tuple[UpstreamRequest, dict[str, str] | None]:
        d = dialect(chat.ChatDialect, provider, dep, chat)
        body = chat.to_chat_request(hub, dep.model, d)
        dropped = tuple(chat.dropped_params(hub, d))
        return request(provider, {}, orjson.dumps(body), dropped), chat.chat_tool_names(hub, d) or None

    def source(self, model: str, names: dict[str, str] | None) -> EventSource:
        return chat.ChatStreamTranslator(model, tool_names=names)

    def message_from(self, raw: bytes, model: str, names: dict[str, str] | None) -> dict[str, Any]:
        return chat.from_chat_response(load_answer(raw), model, tool_names=names)

    def count_request(self, hub: dict[str, Any], body: bytes, headers: Mapping[bytes, bytes], query: str,
                      provider: ProviderSettings, dep: Deployment) -> CountRequest | None:
        return None

    def owner(self, model_id: str) -> str | None:
        return None


TYPE = OpenAIType()
