"""Anthropic Messages upstreams (Anthropic itself and Anthropic-compatible endpoints)."""

from __future__ import annotations

from bytespike.config import ProviderConfig
from bytespike.providers.base import UpstreamRequest, forward_headers

_KEEP = (b"user-agent", b"x-stainless-helper-method", b"x-claude-code-session-id")


def request(provider: ProviderConfig, path: str, query: str, inbound: dict[bytes, bytes], body: bytes) -> UpstreamRequest:
    """Every ``anthropic-*`` header goes up verbatim (version, beta list, and any future ones)."""
    keep = _KEEP + tuple(k for k in inbound if k.startswith(b"anthropic-"))
    headers = forward_headers(inbound, provider, keep)
    headers.setdefault("anthropic-version", "2023-06-01")
    headers["x-api-key"] = provider.api_key
    url = f"{provider.base_url}{path}"
    if query:
        url += "?" + query
    return UpstreamRequest(url, headers, body)
