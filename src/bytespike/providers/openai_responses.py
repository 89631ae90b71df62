"""OpenAI Responses API upstreams: ``POST {base_url}/responses`` with a Bearer key."""

from __future__ import annotations

from bytespike.config import ProviderConfig
from bytespike.providers.base import UpstreamRequest, forward_headers

# Codex CLI's session headers help OpenAI route and cache a conversation; they carry no secret.
_KEEP = (b"openai-organization", b"openai-project", b"session-id", b"thread-id", b"x-client-request-id",
         b"x-codex-beta-features", b"x-codex-window-id", b"x-codex-turn-metadata", b"originator", b"user-agent")


def request(provider: ProviderConfig, inbound: dict[bytes, bytes], body: bytes) -> UpstreamRequest:
    headers = forward_headers(inbound, provider, _KEEP)
    headers["authorization"] = f"Bearer {provider.api_key}"
    return UpstreamRequest(f"{provider.base_url}/responses", headers, body)
