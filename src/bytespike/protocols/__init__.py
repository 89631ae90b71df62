"""Wire formats, one folder each, pure codecs with no I/O. ``INBOUND`` is the registry of the
protocols clients speak to the gateway; each names its wire, so the road can tell a native route
(same wire as the upstream type) from a translated one without naming either."""

from __future__ import annotations

from collections.abc import Mapping

from bytespike.protocols.anthropic.inbound import INBOUND as _MESSAGES
from bytespike.protocols.base import Inbound
from bytespike.protocols.gemini.inbound.protocol import INBOUND as _GEMINI
from bytespike.protocols.openai_chat.inbound.protocol import INBOUND as _CHAT
from bytespike.protocols.openai_responses.protocol import INBOUND as _RESPONSES

INBOUND: dict[str, Inbound] = {p.name: p for p in (_MESSAGES, _CHAT, _GEMINI, _RESPONSES)}

# The Messages hub is also the shape of errors on routes no protocol claims (an unknown path).
HUB: Inbound = _MESSAGES
# ``GET /v1/models`` without any protocol's marker answers in OpenAI's shape, as OpenAI SDKs expect.
MODEL_LIST_DEFAULT: Inbound = _CHAT


def for_request(path: str, headers: Mapping[bytes, bytes], default: Inbound = HUB) -> Inbound:
    """The protocol whose shape a request to a shared route (models, usage, 404, 405) gets."""
    best, surest = default, 0
    for inbound in INBOUND.values():
        sureness = inbound.claims(path, headers)
        if sureness > surest:
            best, surest = inbound, sureness
    return best
