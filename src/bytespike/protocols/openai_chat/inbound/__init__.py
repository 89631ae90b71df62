"""OpenAI Chat Completions clients reaching an Anthropic Messages upstream.

Three pure pieces, no I/O: a Chat request becomes a clean Messages request (also the input of the
Messages -> Gemini / OpenAI-compatible translators), a Message becomes a ``chat.completion``, and
a Messages SSE stream becomes ``chat.completion.chunk`` objects through a small state machine.
"""

from __future__ import annotations

from bytespike.protocols.openai_chat.inbound.common import CAVEATS, ChatRequestError
from bytespike.protocols.openai_chat.inbound.conversation import tool_id
from bytespike.protocols.openai_chat.inbound.request import DEFAULT_MAX_TOKENS, chat_to_messages_request
from bytespike.protocols.openai_chat.inbound.response import (
    chat_usage,
    finish_reason,
    message_to_chat_completion,
)
from bytespike.protocols.openai_chat.inbound.stream import DONE, MessagesToChatStream

__all__ = [
    "CAVEATS",
    "DEFAULT_MAX_TOKENS",
    "DONE",
    "ChatRequestError",
    "MessagesToChatStream",
    "chat_to_messages_request",
    "chat_usage",
    "finish_reason",
    "message_to_chat_completion",
    "tool_id",
]
