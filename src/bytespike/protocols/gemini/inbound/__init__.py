"""Gemini API clients (Gemini CLI, google-genai) reaching any model through the Messages hub.

Pure pieces, no I/O: a GenerateContentRequest becomes a Messages request, a Message becomes a
GenerateContentResponse, and a Messages stream becomes streamGenerateContent chunks through a small
state machine, framed as SSE or a JSON array; errors render in Gemini's shape.
"""

from __future__ import annotations

from bytespike.protocols.gemini.inbound.common import (
    CAVEATS,
    GeminiRequestError,
    decode_thinking,
    encode_thinking,
    error_body,
    error_object,
    error_status,
    finish_reason,
    usage_metadata,
)
from bytespike.protocols.gemini.inbound.request import gemini_to_messages_request, max_output_tokens
from bytespike.protocols.gemini.inbound.response import message_to_gemini_response
from bytespike.protocols.gemini.inbound.stream import GeminiFraming, MessagesToGeminiStream

__all__ = [
    "CAVEATS",
    "GeminiFraming",
    "GeminiRequestError",
    "MessagesToGeminiStream",
    "decode_thinking",
    "encode_thinking",
    "error_body",
    "error_object",
    "error_status",
    "finish_reason",
    "gemini_to_messages_request",
    "max_output_tokens",
    "message_to_gemini_response",
    "usage_metadata",
]
