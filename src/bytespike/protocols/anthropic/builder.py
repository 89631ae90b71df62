"""A state machine that only ever emits well-formed Anthropic Messages stream events.

Translators feed it upstream pieces (text, thinking, tool calls, usage); it owns block indexes,
opening and closing, and the final stop reason, so no translator can emit a malformed stream.
"""

from __future__ import annotations

from typing import Any

import orjson

from bytespike.protocols.hub import STOP_REASONS, Events, empty_usage, new_message_id


class MessageStreamBuilder:
    """Builds a well-formed Anthropic SSE event sequence from upstream pieces: one message_start,
    contiguous block indexes, a block closed before the next opens, delta kinds matching block kinds,
    message_delta with final usage and stop_reason (tool_use whenever a tool_use block was emitted),
    message_stop; or an ``error`` event on failure (no message_stop after it).

    Every method returns a list of (event name, data) pairs ready for ``sse.frame``. Nothing is
    emitted after message_stop or error. ``message()`` gives the message the events describe, so
    non-streaming responses come from the same code.
    """

    def __init__(
        self, model: str, message_id: str | None = None, default_signature: str | None = None
    ) -> None:
        self.model = model
        self.message_id = message_id or new_message_id()
        self.default_signature = default_signature
        self.usage: dict[str, int] = empty_usage()
        self.content: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.started = False
        self.ended = False
        self.failed = False
        self.tool_used = False
        self._open: str | None = None
        self._json: list[str] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, usage: dict[str, int] | None = None) -> Events:
        """message_start (once). Later calls return nothing."""
        if self.started or self.ended:
            return []
        self.started = True
        if usage:
            self.usage = dict(usage)
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": dict(self.usage),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def finish(
        self, stop_reason: str, usage: dict[str, int] | None = None, stop_sequence: str | None = None
    ) -> Events:
        """Close the open block, then message_delta (final usage) and message_stop.

        stop_reason becomes tool_use whenever a tool_use block was emitted (a cut at max_tokens
        stays max_tokens, as Anthropic reports it), and never tool_use without one.
        """
        if self.ended:
            return []
        out = self.start()
        out += self.close()
        if usage:
            self.usage = dict(usage)
        reason = stop_reason if stop_reason in STOP_REASONS else "end_turn"
        if self.tool_used and reason != "max_tokens":
            reason = "tool_use"
        elif not self.tool_used and reason == "tool_use":
            reason = "end_turn"
        self.stop_reason = reason
        self.stop_sequence = stop_sequence if reason == "stop_sequence" else None
        self.ended = True
        delta = {"stop_reason": reason, "stop_sequence": self.stop_sequence}
        out.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": dict(self.usage)}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def error(self, error_type: str, message: str) -> Events:
        """An ``error`` event; the stream ends here without message_stop."""
        if self.ended:
            return []
        self.ended = True
        self.failed = True
        return [("error", {"type": "error", "error": {"type": error_type, "message": message}})]

    # --- content -----------------------------------------------------------------------------

    def text(self, text: str) -> Events:
        if self.ended or not text:
            return []
        out = self._ensure("text")
        self.content[-1]["text"] += text
        out.append(self._delta({"type": "text_delta", "text": text}))
        return out

    def thinking(self, text: str) -> Events:
        if self.ended or not text:
            return []
        out = self._ensure("thinking")
        self.content[-1]["thinking"] += text
        out.append(self._delta({"type": "thinking_delta", "thinking": text}))
        return out

    def signature(self, signature: str) -> Events:
        """Seal the open thinking block with ``signature`` (opening an empty one if none is open)."""
        if self.ended or not signature:
            return []
        out = self._ensure("thinking")
        self.content[-1]["signature"] = signature
        out.append(self._delta({"type": "signature_delta", "signature": signature}))
        out += self.close()
        return out

    def tool_use(self, tool_id: str, name: str, partial_json: str | None = None) -> Events:
        """Open a tool_use block; ``partial_json`` (if not empty) is its first input_json_delta."""
        if self.ended:
            return []
        out = self.start()
        out += self.close()
        block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
        self.content.append(block)
        self._open = "tool_use"
        self._json = []
        self.tool_used = True
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self._index(), "content_block": dict(block)},
            )
        )
        out += self.tool_input(partial_json or "")
        return out

    def tool_input(self, fragment: str) -> Events:
        """One input_json_delta on the open tool_use block."""
        if self.ended or not fragment or self._open != "tool_use":
            return []
        self._json.append(fragment)
        return [self._delta({"type": "input_json_delta", "partial_json": fragment})]

    def close(self) -> Events:
        """content_block_stop for the open block, if any (an unsigned thinking block gets the default signature)."""
        if self._open is None:
            return []
        out: Events = []
        block = self.content[-1]
        if self._open == "thinking" and not block.get("signature") and self.default_signature:
            block["signature"] = self.default_signature
            out.append(self._delta({"type": "signature_delta", "signature": self.default_signature}))
        if self._open == "tool_use":
            block["input"] = _parse_input("".join(self._json))
            self._json = []
        out.append(("content_block_stop", {"type": "content_block_stop", "index": self._index()}))
        self._open = None
        return out

    @property
    def open_block(self) -> str | None:
        return self._open

    def message(self) -> dict[str, Any]:
        """The Message these events describe (the open tool block's input parsed as far as it got)."""
        content = [dict(b) for b in self.content]
        if self._open == "tool_use" and content:
            content[-1]["input"] = _parse_input("".join(self._json))
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": dict(self.usage),
        }

    # --- internals ---------------------------------------------------------------------------

    def _index(self) -> int:
        return len(self.content) - 1

    def _ensure(self, kind: str) -> Events:
        out = self.start()
        if self._open == kind and not (kind == "thinking" and self.content[-1].get("signature")):
            return out
        out += self.close()
        block: dict[str, Any] = (
            {"type": "text", "text": ""}
            if kind == "text"
            else {"type": "thinking", "thinking": "", "signature": ""}
        )
        self.content.append(block)
        self._open = kind
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self._index(), "content_block": dict(block)},
            )
        )
        return out

    def _delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": self._index(), "delta": delta},
        )


def _parse_input(raw: str) -> dict[str, Any]:
    """Tool arguments as an object: empty means ``{}``; anything unparseable is kept as a string
    under ``_unparsed_arguments`` so the tool (and the model) see it rather than losing it."""
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"_unparsed_arguments": raw}
    return value if isinstance(value, dict) else {"_unparsed_arguments": raw}
