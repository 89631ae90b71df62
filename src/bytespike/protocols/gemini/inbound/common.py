"""What the Gemini -> Messages codec shares: caveats, the request error, error rendering,
finish reasons, usage, and the thought signatures that carry thinking blocks through a Gemini client.

Thinking through a Gemini client
--------------------------------
A Gemini client (Gemini CLI, google-genai) sends back ``thoughtSignature`` on the part it came
on, and may drop ``thought: true`` parts from its history. Claude wants its signed thinking
blocks back, unmodified, before the tool_use they led to. So the thinking blocks of an answer
travel inside the ``thoughtSignature`` of the first part that follows them (as Gemini itself signs
the first functionCall), encoded as base64 of ``bytespike:1:hub:`` + the blocks as JSON; thought
parts are only for display. A signature the gateway did not make (a real Gemini one in a history
that moved to another model) is ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

import orjson

from bytespike.errors import GatewayError

CAVEATS: Final[tuple[str, ...]] = (
    "temperature is clamped into [0, 1]; candidateCount > 1 is rejected; presencePenalty, "
    "frequencyPenalty, seed, logprobs, safetySettings, cachedContent and responseModalities are dropped.",
    "thinkingConfig becomes a thinking budget (thinkingLevel LOW 2048, MEDIUM 8192, HIGH 16384 tokens; "
    "thinkingBudget as given, at least 1024; -1 = 8192; 0 = off); thinking stays off while a tool loop "
    "continues a turn that carries no thinking.",
    "Thinking blocks travel inside thoughtSignature on the part after them; thought parts are for display, "
    "shown in streams when includeThoughts is set and always in non-streamed answers.",
    "Gemini server tools (googleSearch, codeExecution, urlContext) and executableCode / "
    "codeExecutionResult parts are dropped.",
    "toolConfig mode VALIDATED is sent as AUTO; ANY with several allowedFunctionNames as any tool.",
    "fileData URIs are passed as URLs (images and PDFs); other inline or file data types are described as text.",
    "responseSchema / responseJsonSchema becomes output_config.format; responseMimeType application/json "
    "without a schema becomes a system instruction.",
    "finishReason is STOP for end_turn, stop_sequence and tool_use, MAX_TOKENS for max_tokens, SAFETY for refusal.",
)

SIG_PREFIX: Final = b"bytespike:1:hub:"

# Gemini's status names (google.rpc.Code) by HTTP status, as its error bodies carry them.
_STATUS: Final[Mapping[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}

_FINISH: Final[Mapping[str, str]] = {
    "end_turn": "STOP",
    "stop_sequence": "STOP",
    "tool_use": "STOP",
    "pause_turn": "STOP",
    "max_tokens": "MAX_TOKENS",
    "model_context_window_exceeded": "MAX_TOKENS",
    "refusal": "SAFETY",
}


class GeminiRequestError(ValueError):
    """An invalid GenerateContentRequest; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def error_status(status: int) -> str:
    """The google.rpc status name Gemini puts beside an HTTP status."""
    if status in _STATUS:
        return _STATUS[status]
    return "INVALID_ARGUMENT" if 400 <= status < 500 else "INTERNAL"


def error_object(err: GatewayError) -> dict[str, Any]:
    """``{"error": {"code", "message", "status"}}``: Gemini's error shape for a gateway error."""
    return {"error": {"code": err.status, "message": err.message, "status": error_status(err.status)}}


def error_body(err: GatewayError) -> bytes:
    return orjson.dumps(error_object(err))


def finish_reason(stop_reason: Any) -> str:
    """Messages stop_reason -> Gemini finishReason; unknown values end the turn (STOP)."""
    return _FINISH.get(stop_reason, "STOP") if isinstance(stop_reason, str) else "STOP"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_metadata(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Messages usage (input excludes the cache; output includes thinking) -> usageMetadata
    (the prompt includes cached tokens; candidates exclude thoughts)."""
    usage = usage or {}
    cached = _count(usage.get("cache_read_input_tokens"))
    prompt = _count(usage.get("input_tokens")) + cached + _count(usage.get("cache_creation_input_tokens"))
    output = _count(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    thoughts = min(_count(details.get("thinking_tokens")), output) if isinstance(details, Mapping) else 0
    out: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output - thoughts,
        "totalTokenCount": prompt + output,
    }
    if cached:
        out["cachedContentTokenCount"] = cached
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    return out


def encode_thinking(blocks: list[dict[str, Any]]) -> str:
    """Thinking / redacted_thinking blocks -> a thoughtSignature (standard base64, as Gemini's)."""
    return base64.b64encode(SIG_PREFIX + orjson.dumps(blocks)).decode()


def decode_thinking(signature: Any) -> list[dict[str, Any]]:
    """The thinking blocks a gateway-made thoughtSignature carries; [] for any other signature.

    Accepts both base64 alphabets: SDKs re-encode bytes fields URL-safe.
    """
    if not isinstance(signature, str) or not signature:
        return []
    text = signature.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return []
    if not raw.startswith(SIG_PREFIX):
        return []
    try:
        blocks = orjson.loads(raw[len(SIG_PREFIX):])
    except orjson.JSONDecodeError:
        return []
    if not isinstance(blocks, list):
        return []
    out = []
    for b in blocks:
        if not isinstance(b, dict):
            continue
        if b.get("type") == "thinking" and isinstance(b.get("thinking"), str) and isinstance(b.get("signature"), str):
            out.append({"type": "thinking", "thinking": b["thinking"], "signature": b["signature"]})
        elif b.get("type") == "redacted_thinking" and isinstance(b.get("data"), str):
            out.append({"type": "redacted_thinking", "data": b["data"]})
    return out
