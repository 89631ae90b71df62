"""OpenAI's Responses API in both directions, through the Messages hub.

Upstream (Messages clients reaching a Responses upstream): ``upstream`` builds the request,
``answers`` turns the answer back into Anthropic events. Inbound (Responses clients reaching any
model): ``inbound`` turns the request into a Messages request, ``output`` turns Anthropic events
back into a Responses stream or object. All pure; ``relays`` holds the byte-level pieces.
"""

from __future__ import annotations

from bytespike.protocols.openai_responses.answers import ResponsesStreamTranslator, from_responses_response
from bytespike.protocols.openai_responses.common import (
    INBOUND_CAVEATS,
    UPSTREAM_CAVEATS,
    ResponsesRequestError,
    responses_usage,
    usage_from_responses,
)
from bytespike.protocols.openai_responses.inbound import custom_tool_names, responses_to_messages_request
from bytespike.protocols.openai_responses.output import MessagesToResponsesStream, message_to_response
from bytespike.protocols.openai_responses.upstream import (
    ResponsesDialect,
    dropped_params,
    preset_for_model,
    responses_tool_names,
    to_responses_request,
)

__all__ = [
    "INBOUND_CAVEATS",
    "UPSTREAM_CAVEATS",
    "MessagesToResponsesStream",
    "ResponsesDialect",
    "ResponsesRequestError",
    "ResponsesStreamTranslator",
    "custom_tool_names",
    "dropped_params",
    "from_responses_response",
    "message_to_response",
    "preset_for_model",
    "responses_to_messages_request",
    "responses_tool_names",
    "responses_usage",
    "to_responses_request",
    "usage_from_responses",
]
