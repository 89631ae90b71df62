"""Gemini generateContent / streamGenerateContent upstreams."""

from __future__ import annotations

from bytespike.config import ProviderConfig
from bytespike.providers.base import UpstreamRequest, forward_headers


def request(provider: ProviderConfig, model: str, stream: bool, body: bytes) -> UpstreamRequest:
    headers = forward_headers({}, provider, ())
    headers["x-goog-api-key"] = provider.api_key
    verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return UpstreamRequest(f"{provider.base_url}/v1beta/models/{model}:{verb}", headers, body)


def count_request(provider: ProviderConfig, model: str, body: bytes) -> UpstreamRequest:
    headers = forward_headers({}, provider, ())
    headers["x-goog-api-key"] = provider.api_key
    return UpstreamRequest(f"{provider.base_url}/v1beta/models/{model}:countTokens", headers, body)
