"""Anthropic Message -> GenerateContentResponse, for Gemini clients of translated models."""

from __future__ import annotations

from collections.abc import Mapping
from random import getrandbits
from typing import Any

import orjson

from bytespike.protocols.gemini.inbound.common import encode_thinking, finish_reason, usage_metadata


def response_id(message_id: Any) -> str:
    """Gemini's responseId from the Message id (stable), else a random one."""
    if isinstance(message_id, str) and message_id:
        return message_id.removeprefix("msg_")
    return f"{getrandbits(96):024x}"


class PartWriter:
    """Messages content blocks -> Gemini parts; thinking blocks ride in the next part's thoughtSignature."""

    def __init__(self, include_thoughts: bool) -> None:
        self.include_thoughts = include_thoughts
        self._pending: list[dict[str, Any]] = []

    def thought(self, text: str) -> list[dict[str, Any]]:
        """A thought summary part, for display only (empty when thoughts were not asked for)."""
        return [{"text": text, "thought": True}] if text and self.include_thoughts else []

    def thinking_done(self, block: Mapping[str, Any]) -> None:
        if block.get("type") == "thinking" and block.get("signature"):
            self._pending.append({"type": "thinking", "thinking": block.get("thinking") or "",
                                  "signature": block["signature"]})
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            self._pending.append({"type": "redacted_thinking", "data": block["data"]})

    def text(self, text: str) -> list[dict[str, Any]]:
        return [self._signed({"text": text})] if text else []

    def call(self, call_id: Any, name: Any, args: Any) -> list[dict[str, Any]]:
        fc: dict[str, Any] = {"name": str(name or ""), "args": args if isinstance(args, dict) else {}}
        if isinstance(call_id, str) and call_id:
            fc = {"id": call_id, **fc}
        return [self._signed({"functionCall": fc})]

    def end(self) -> list[dict[str, Any]]:
        """Thinking left with no part after it goes on a trailing empty text part, as Gemini 3 does."""
        return [self._signed({"text": ""})] if self._pending else []

    def _signed(self, part: dict[str, Any]) -> dict[str, Any]:
        if self._pending:
            part["thoughtSignature"] = encode_thinking(self._pending)
            self._pending = []
        return part


def message_to_gemini_response(msg: Mapping[str, Any], model: str, include_thoughts: bool = True) -> dict[str, Any]:
    """A whole Message -> GenerateContentResponse; ``model`` is what the client asked for."""
    writer = PartWriter(include_thoughts)
    parts: list[dict[str, Any]] = []
    for block in msg.get("content") or ():
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "thinking":
            parts += writer.thought(str(block.get("thinking") or ""))
            writer.thinking_done(block)
        elif kind == "redacted_thinking":
            writer.thinking_done(block)
        elif kind == "text":
            parts += writer.text(str(block.get("text") or ""))
        elif kind == "tool_use":
            parts += writer.call(block.get("id"), block.get("name"), block.get("input"))
    parts += writer.end()
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts},
                                 "finishReason": finish_reason(msg.get("stop_reason")), "index": 0}
    return {
        "candidates": [candidate],
        "usageMetadata": usage_metadata(msg.get("usage")),
        "modelVersion": model,
        "responseId": response_id(msg.get("id")),
    }


def parse_arguments(partial_json: str, start_input: Any) -> dict[str, Any]:
    """A tool_use's streamed input: the joined JSON, else what its start event held, else ``{}``."""
    if partial_json:
        try:
            value = orjson.loads(partial_json)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}
    return dict(start_input) if isinstance(start_input, Mapping) else {}
