"""Gemini generateContent / streamGenerateContent upstreams."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from bytespike.protocols.base import EventSource
from bytespike.protocols.gemini import upstream as gemini
from bytespike.protocols.gemini.inbound.protocol import VIEW_KEYS, WIRE
from bytespike.protocols.json import load_answer
from bytespike.providers.base import (
    CountRequest,
    Deployment,
    ProviderSettings,
    UpstreamRequest,
    dialect,
    forward_headers,
)

_CLIENT_ONLY = frozenset({"key"})  # query parameters that stay here: the client's key


def request(provider: ProviderSettings, model: str, stream: bool, body: bytes) -> UpstreamRequest:
    headers = forward_headers({}, provider, ())
    headers["x-goog-api-key"] = provider.api_key
    verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return UpstreamRequest(f"{provider.base_url}/v1beta/models/{model}:{verb}", headers, body)


def count_request(provider: ProviderSettings, model: str, body: bytes) -> UpstreamRequest:
    headers = forward_headers({}, provider, ())
    headers["x-goog-api-key"] = provider.api_key
    return UpstreamRequest(f"{provider.base_url}/v1beta/models/{model}:countTokens", headers, body)


class GeminiType:
    name = "gemini"
    wire = WIRE
    caveats: tuple[str, ...] = tuple(gemini.CAVEATS)

    def native_request(self, req: dict[str, Any], body: bytes | None, headers: Mapping[bytes, bytes], query: str,
                       provider: ProviderSettings, dep: Deployment, stream: bool) -> UpstreamRequest:
        if body is None:
            body = orjson.dumps({k: v for k, v in req.items() if k not in VIEW_KEYS})
        headers_up = forward_headers({}, provider, ())
        headers_up["x-goog-api-key"] = provider.api_key
        verb = "streamGenerateContent" if stream else "generateContent"
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in _CLIENT_ONLY]
        url = f"{provider.base_url}/v1beta/models/{dep.model}:{verb}"
        return UpstreamRequest(url + ("?" + urlencode(kept) if kept else ""), headers_up, body)

    def hub_request(self, hub: dict[str, Any], provider: ProviderSettings, dep: Deployment,
                    stream: bool) -> tuple[UpstreamRequest, dict[str, str] | None]:
        d = dialect(gemini.GeminiDialect, provider, dep, gemini)
        body = gemini.to_gemini_request(hub, d)
        return request(provider, dep.model, stream, orjson.dumps(body)), gemini.gemini_tool_names(hub, d) or None

    def source(self, model: str, names: dict[str, str] | None) -> EventSource:
        return gemini.GeminiStreamTranslator(model, tool_names=names, late_text_signatures=False)

    def message_from(self, raw: bytes, model: str, names: dict[str, str] | None) -> dict[str, Any]:
        return gemini.from_gemini_response(load_answer(raw), model, tool_names=names, late_text_signatures=False)

    def count_request(self, hub: dict[str, Any], body: bytes, headers: Mapping[bytes, bytes], query: str,
                      provider: ProviderSettings, dep: Deployment) -> CountRequest | None:
        d = dialect(gemini.GeminiDialect, provider, dep, gemini)
        greq = gemini.to_gemini_request({**hub, "max_tokens": 1}, d)
        greq.pop("generationConfig", None)
        greq["model"] = f"models/{dep.model}"
        return CountRequest(count_request(provider, dep.model, orjson.dumps({"generateContentRequest": greq})),
                            _total_tokens)

    def owner(self, model_id: str) -> str | None:
        return None


def _total_tokens(raw: bytes) -> bytes:
    data = orjson.loads(raw)
    return orjson.dumps({"input_tokens": int(data.get("totalTokens", 0))})


TYPE = GeminiType()
