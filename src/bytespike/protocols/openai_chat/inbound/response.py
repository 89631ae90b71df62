"""Anthropic Message -> ``chat.completion``, with the finish reason and usage mappings the stream shares."""

from __future__ import annotations

import time
from random import getrandbits
from typing import Any, Final

import orjson

_FINISH: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_USAGE_KEYS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def message_to_chat_completion(
    msg: dict, model: str, completion_id: str | None = None, created: int | None = None
) -> dict:
    """Anthropic Message (non-stream) -> ``chat.completion``; ``model`` is what the client asked for."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict] = []
    for block in msg.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    text = "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    usage = _usage_fields(msg.get("usage"))
    return {
        "id": completion_id or _completion_id(msg.get("id")),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(msg.get("stop_reason"), bool(calls)),
            }
        ],
        "usage": chat_usage(usage, _thinking_tokens(msg.get("usage"))),
        "system_fingerprint": None,
    }


def finish_reason(stop_reason: object, called_tools: bool) -> str:
    """Messages stop_reason -> Chat finish_reason; tool_calls exactly when tool calls were returned."""
    reason = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls" and not called_tools:
        return "stop"
    if reason == "stop" and called_tools:
        return "tool_calls"
    return reason


def chat_usage(usage: dict, reasoning_tokens: int | None = None) -> dict:
    """Messages usage (input excludes cache reads and writes) -> Chat usage (prompt includes them)."""
    cache_read = usage.get("cache_read_input_tokens", 0)
    cache_write = usage.get("cache_creation_input_tokens", 0)
    prompt = usage.get("input_tokens", 0) + cache_read + cache_write
    completion = usage.get("output_tokens", 0)
    details: dict[str, int] = {"cached_tokens": cache_read}
    if cache_write > 0:
        details["cache_write_tokens"] = cache_write
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }
    if reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return out


def _usage_fields(usage: object) -> dict[str, int]:
    out = dict.fromkeys(_USAGE_KEYS, 0)
    _merge_usage(out, usage)
    return out


def _merge_usage(into: dict[str, int], usage: object) -> None:
    """Messages usage counts are cumulative: a present integer replaces, an absent one keeps."""
    if not isinstance(usage, dict):
        return
    for key in _USAGE_KEYS:
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            into[key] = value


def _thinking_tokens(usage: object) -> int | None:
    details = usage.get("output_tokens_details") if isinstance(usage, dict) else None
    value = details.get("thinking_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _completion_id(message_id: object) -> str:
    if isinstance(message_id, str) and message_id:
        return "chatcmpl-" + message_id.removeprefix("msg_")
    return f"chatcmpl-{getrandbits(128):032x}"
