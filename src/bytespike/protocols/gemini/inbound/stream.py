"""Messages stream events -> streamGenerateContent chunks, one upstream event at a time.

Gemini chunks carry only new parts; usageMetadata repeats, cumulative; finishReason comes on the
last chunk. A functionCall comes whole in one part, so a tool_use block is held until it stops.
Framing: ``alt=sse`` gives ``data: <chunk>\\r\\n\\r\\n`` frames (Gemini's own line ends), without it a
JSON array streamed element by element.
"""

from __future__ import annotations

from typing import Any

import orjson

from bytespike.protocols.gemini.inbound.common import finish_reason, usage_metadata
from bytespike.protocols.gemini.inbound.response import PartWriter, parse_arguments, response_id
from bytespike.protocols.hub import mapping

_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


class MessagesToGeminiStream:
    """Feed Anthropic stream events, get GenerateContentResponse chunks (dicts).

    Unknown events, blocks and deltas are ignored; an ``error`` event is for the caller to render
    (see ``GeminiFraming.error``).
    """

    def __init__(self, model: str, include_thoughts: bool = True) -> None:
        self.model = model
        self.usage: dict[str, Any] = dict.fromkeys(_USAGE_KEYS, 0)
        self._writer = PartWriter(include_thoughts)
        self._id = response_id(None)
        self._blocks: dict[int, dict[str, Any]] = {}
        self._stop_reason: str | None = None
        self.finished = False

    def feed(self, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        if self.finished or not isinstance(data, dict):
            return []
        kind = event or str(data.get("type") or "")
        if kind == "message_start":
            message = mapping(data.get("message"))
            self._merge(message.get("usage"))
            if message.get("id"):
                self._id = response_id(message["id"])
            return []
        if kind == "content_block_start":
            return self._start(data.get("index"), data.get("content_block"))
        if kind == "content_block_delta":
            return self._delta(data.get("index"), data.get("delta"))
        if kind == "content_block_stop":
            return self._stop(data.get("index"))
        if kind == "message_delta":
            self._merge(data.get("usage"))
            delta = data.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str):
                self._stop_reason = reason
            return []
        if kind == "message_stop":
            return self.finish()
        return []

    def finish(self) -> list[dict[str, Any]]:
        """The last chunk: any trailing signature, finishReason and the final usage."""
        if self.finished:
            return []
        out: list[dict[str, Any]] = []
        for index in sorted(self._blocks):  # a block cut short by max_tokens
            out += self._stop(index)
        self.finished = True
        parts = self._writer.end()
        # Without new parts the content is just its role, as Gemini's own last chunk then is.
        content: dict[str, Any] = {"role": "model", "parts": parts} if parts else {"role": "model"}
        out.append(self._chunk({"content": content, "finishReason": finish_reason(self._stop_reason), "index": 0}))
        return out

    # --- internals ---------------------------------------------------------------------------

    def _merge(self, usage: Any) -> None:
        if isinstance(usage, dict):
            for key, value in usage.items():
                if value is not None:
                    self.usage[key] = value

    def _chunk(self, candidate: dict[str, Any]) -> dict[str, Any]:
        return {"candidates": [candidate], "usageMetadata": usage_metadata(self.usage),
                "modelVersion": self.model, "responseId": self._id}

    def _parts(self, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self._chunk({"content": {"role": "model", "parts": parts}, "index": 0})] if parts else []

    def _start(self, index: Any, block: Any) -> list[dict[str, Any]]:
        if not isinstance(index, int) or not isinstance(block, dict):
            return []
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = {"type": "text"}
            return self._parts(self._writer.text(str(block.get("text") or "")))
        if kind == "thinking":
            text = str(block.get("thinking") or "")
            self._blocks[index] = {"type": "thinking", "thinking": text, "signature": str(block.get("signature") or "")}
            return self._parts(self._writer.thought(text))
        if kind == "redacted_thinking":
            self._writer.thinking_done(block)
        elif kind == "tool_use":
            self._blocks[index] = {"type": "tool_use", "id": block.get("id"), "name": block.get("name"),
                                   "input": block.get("input"), "json": ""}
        return []

    def _delta(self, index: Any, delta: Any) -> list[dict[str, Any]]:
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None or not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta" and block["type"] == "text":
            return self._parts(self._writer.text(str(delta.get("text") or "")))
        if kind == "thinking_delta" and block["type"] == "thinking":
            piece = str(delta.get("thinking") or "")
            block["thinking"] += piece
            return self._parts(self._writer.thought(piece))
        if kind == "signature_delta" and block["type"] == "thinking":
            block["signature"] += str(delta.get("signature") or "")
        elif kind == "input_json_delta" and block["type"] == "tool_use":
            block["json"] += str(delta.get("partial_json") or "")
        return []

    def _stop(self, index: Any) -> list[dict[str, Any]]:
        block = self._blocks.pop(index, None) if isinstance(index, int) else None
        if block is None:
            return []
        if block["type"] == "thinking":
            self._writer.thinking_done(block)
        elif block["type"] == "tool_use":
            args = parse_arguments(block["json"], block["input"])
            return self._parts(self._writer.call(block["id"], block["name"], args))
        return []


class GeminiFraming:
    """Chunks -> bytes: SSE frames (``alt=sse``) or one streamed JSON array."""

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self._opened = False
        self._closed = False

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        return b"".join(self._one(orjson.dumps(c)) for c in chunks)

    def _one(self, payload: bytes) -> bytes:
        if self.sse:
            return b"data: " + payload + b"\r\n\r\n"
        if self._opened:
            return b",\r\n" + payload
        self._opened = True
        return b"[" + payload

    def error(self, error: dict[str, Any]) -> bytes:
        """A failure after the first byte: Gemini's error object as the stream's last element."""
        return self._one(orjson.dumps(error)) + self.close()

    def close(self) -> bytes:
        if self.sse or self._closed:
            return b""
        self._closed = True
        return b"]" if self._opened else b"[]"
