"""What both directions of the Responses translation share: caveats, the request error, usage and
the codecs that carry reasoning and thinking through clients that keep only their own fields."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final

import orjson

from bytespike.protocols.hub import empty_usage, gateway_signature, read_gateway_signature

SIG_RESPONSES: Final = "responses"
"""Gateway signature kind of a thinking block that carries an OpenAI reasoning item."""

ENCRYPTED_PREFIX: Final = "bytespike-rs1."
"""Prefix of an ``encrypted_content`` this gateway made from a thinking block (for Responses clients)."""

UPSTREAM_CAVEATS: Final[tuple[str, ...]] = (
    "stop_sequences are dropped (the Responses API has none); top_k is dropped.",
    "OpenAI reasoning summaries come back as thinking blocks whose signature carries the encrypted "
    "reasoning item; it goes back upstream unchanged on the next turn (store: false, nothing kept).",
    "Thinking blocks signed by Anthropic or another vendor, and redacted_thinking, are dropped.",
    "tool_result is_error has no slot: the output text is prefixed with 'Error: '.",
    "Server tools (web search, code execution, ...) and their result blocks are dropped.",
    "metadata.user_id is sent as safety_identifier (hashed when longer than 64 characters).",
    "Reasoning models (gpt-5*, o1, o3, o4*) accept only the default temperature and top_p: other values "
    "are dropped and listed in the bytespike-dropped-params response header.",
)

INBOUND_CAVEATS: Final[tuple[str, ...]] = (
    "Stateless: store must be false or absent, and previous_response_id, conversation and background are "
    "refused with a 400 (nothing is stored server-side).",
    "instructions and system/developer messages anywhere in the input are hoisted, in order, into the system prompt.",
    "Custom (freeform) tools such as apply_patch reach the model as a function with one string argument "
    "`input`; the call comes back as a custom_tool_call.",
    "namespace, local_shell, web_search, file_search, computer_use, code_interpreter, image_generation and "
    "mcp tools are dropped (the model cannot call them).",
    "reasoning.effort becomes a thinking budget (low 2048, medium 8192, high 24576, xhigh/max 32768); "
    "none/minimal leave thinking off; temperature and top_p are dropped while thinking is on.",
    "Thinking comes back as reasoning items with a summary; their encrypted_content carries the thinking "
    "block (and its signature) back on the next turn. OpenAI reasoning items from another model are dropped.",
    "text.format json_schema becomes output_config.format (name and strict are dropped); verbosity, "
    "truncation, prompt_cache_key, service_tier, metadata and include are ignored.",
    "temperature is clamped into [0, 1].",
)


class ResponsesRequestError(ValueError):
    """An invalid Responses request; ``param`` names the offending field as OpenAI errors do."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# --- usage -------------------------------------------------------------------------------------


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_responses(usage: Any) -> dict[str, int]:
    """Responses usage -> Anthropic split: input_tokens includes cache reads (and writes, when reported)."""
    if not isinstance(usage, Mapping):
        return empty_usage()
    details = usage.get("input_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    cache_read = _int(details.get("cached_tokens"))
    cache_write = _int(details.get("cache_write_tokens"))
    out = {
        "input_tokens": max(_int(usage.get("input_tokens")) - cache_read - cache_write, 0),
        "output_tokens": _int(usage.get("output_tokens")),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }
    reasoning = _int((usage.get("output_tokens_details") or {}).get("reasoning_tokens")) \
        if isinstance(usage.get("output_tokens_details"), Mapping) else 0
    if reasoning:
        out["output_tokens_details"] = {"thinking_tokens": reasoning}  # type: ignore[assignment]
    return out


def responses_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic usage -> Responses usage: input includes cache reads and writes; reasoning tokens kept."""
    cache_read = _int(usage.get("cache_read_input_tokens"))
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    inp = _int(usage.get("input_tokens")) + cache_read + cache_write
    out = _int(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    reasoning = _int(details.get("thinking_tokens")) if isinstance(details, Mapping) else 0
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


# --- codecs ------------------------------------------------------------------------------------


def _b64(data: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def _unb64(text: str) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None


def reasoning_signature(item: Mapping[str, Any]) -> str:
    """A thinking-block signature carrying an OpenAI reasoning item (id, summary, encrypted_content)."""
    kept = {k: item[k] for k in ("id", "summary", "encrypted_content") if k in item}
    kept["type"] = "reasoning"
    return gateway_signature(SIG_RESPONSES, _b64(kept))


def reasoning_item(signature: Any) -> dict[str, Any] | None:
    """The OpenAI reasoning item a thinking block's signature carries, or None when it carries none."""
    parsed = read_gateway_signature(signature)
    if parsed is None or parsed[0] != SIG_RESPONSES:
        return None
    item = _unb64(parsed[1])
    return item if isinstance(item, dict) and item.get("type") == "reasoning" else None


def pack_thinking(block: Mapping[str, Any]) -> str:
    """``encrypted_content`` for a Responses client, carrying a thinking or redacted_thinking block
    whole (text and signature), so the next turn can replay it exactly as the upstream made it."""
    if block.get("type") == "redacted_thinking":
        return ENCRYPTED_PREFIX + _b64({"r": block.get("data", "")})
    return ENCRYPTED_PREFIX + _b64({"t": block.get("thinking", ""), "s": block.get("signature", "")})


def unpack_thinking(encrypted: Any) -> dict[str, Any] | None:
    """The thinking block an ``encrypted_content`` made by ``pack_thinking`` carries, else None."""
    if not isinstance(encrypted, str) or not encrypted.startswith(ENCRYPTED_PREFIX):
        return None
    data = _unb64(encrypted[len(ENCRYPTED_PREFIX):])
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("r"), str):
        return {"type": "redacted_thinking", "data": data["r"]}
    if isinstance(data.get("t"), str) and isinstance(data.get("s"), str):
        return {"type": "thinking", "thinking": data["t"], "signature": data["s"]}
    return None
