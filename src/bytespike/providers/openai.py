"""OpenAI Chat Completions upstreams (OpenAI and any compatible server)."""

from __future__ import annotations

from bytespike.config import ProviderConfig
from bytespike.providers.base import UpstreamRequest, forward_headers


def request(provider: ProviderConfig, inbound: dict[bytes, bytes], body: bytes) -> UpstreamRequest:
    headers = forward_headers(inbound, provider, (b"openai-organization", b"openai-project"))
    headers["authorization"] = f"Bearer {provider.api_key}"
    return UpstreamRequest(f"{provider.base_url}/chat/completions", headers, body)
