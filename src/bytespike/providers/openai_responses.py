"""OpenAI Responses API upstreams: ``POST {base_url}/responses`` with a Bearer key.

Messages requests reach it through ``protocols.openai_responses.upstream`` (stateless: store
false, encrypted reasoning carried in thinking signatures); Responses clients go through natively.
The parameter dialect follows the deployment's model name unless ``options: {dialect: ...}`` says
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bytespike.protocols.base import EventSource
from bytespike.protocols.json import load_answer
from bytespike.protocols.openai_responses import answers
from bytespike.protocols.openai_responses import upstream as responses
from bytespike.protocols.openai_responses.common import UPSTREAM_CAVEATS
from bytespike.protocols.openai_responses.protocol import WIRE
from bytespike.providers.base import (
    CountRequest,
    Deployment,
    ProviderSettings,
    UpstreamRequest,
    dialect,
    forward_headers,
)

# Codex CLI's session headers help OpenAI route and cache a conversation; they carry no secret.
_KEEP = (b"openai-organization", b"openai-project", b"session-id", b"thread-id", b"x-client-request-id",
         b"x-codex-beta-features", b"x-codex-window-id", b"x-codex-turn-metadata", b"originator", b"user-agent")


def request(provider: ProviderSettings, inbound: Mapping[bytes, bytes], body: bytes,
            dropped: tuple[str, ...] = ()) -> UpstreamRequest:
    headers = forward_headers(inbound, provider, _KEEP)
    headers["authorization"] = f"Bearer {provider.api_key}"
    return UpstreamRequest(f"{provider.base_url}/responses", headers, body, dropped)


class OpenAIResponsesType:
    name = "openai_responses"
    wire = WIRE
    caveats: tuple[str, ...] = UPSTREAM_CAVEATS

    def native_request(self, req: dict[str, Any], body: bytes | None, headers: Mapping[bytes, bytes], query: str,
                       provider: ProviderSettings, dep: Deployment, stream: bool) -> UpstreamRequest:
        if body is None or req.get("model") != dep.model:
            body = orjson.dumps({**req, "model": dep.model})
        return request(provider, headers, body)

    def hub_request(self, hub: dict[str, Any], provider: ProviderSettings, dep: Deployment,
                    stream: bool) -> tuple[UpstreamRequest, dict[str, str] | None]:
        d = dialect(responses.ResponsesDialect, provider, dep, responses)
        body = responses.to_responses_request(hub, dep.model, d)
        dropped = tuple(responses.dropped_params(hub, d))
        return request(provider, {}, orjson.dumps(body), dropped), responses.responses_tool_names(hub, d) or None

    def source(self, model: str, names: dict[str, str] | None) -> EventSource:
        return answers.ResponsesStreamTranslator(model, tool_names=names)

    def message_from(self, raw: bytes, model: str, names: dict[str, str] | None) -> dict[str, Any]:
        return answers.from_responses_response(load_answer(raw), model, tool_names=names)

    def count_request(self, hub: dict[str, Any], body: bytes, headers: Mapping[bytes, bytes], query: str,
                      provider: ProviderSettings, dep: Deployment) -> CountRequest | None:
        return None

    def owner(self, model_id: str) -> str | None:
        return None


TYPE = OpenAIResponsesType()
