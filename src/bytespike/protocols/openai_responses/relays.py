"""Byte-level pieces the gateway's relays use for Responses clients: the sink that writes a
Responses stream from Anthropic events, and the observer of a native Responses stream."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from bytespike.protocols.openai_responses.common import usage_from_responses
from bytespike.protocols.openai_responses.output import MessagesToResponsesStream
from bytespike.protocols.sse import SSEParser, frame

_TERMINAL = ("response.completed", "response.incomplete")


class ResponsesSink:
    """Anthropic events -> Responses SSE frames (``event: <type>`` + ``data:``, no ``[DONE]``)."""

    def __init__(self, model: str, request: Mapping[str, Any], custom_tools: Iterable[str] = ()) -> None:
        self._stream = MessagesToResponsesStream(model, request, custom_tools)

    def events(self, events: list[tuple[str, dict[str, Any]]]) -> bytes:
        out: list[bytes] = []
        for name, data in events:
            for ev in self._stream.feed(name, data):
                out.append(frame(ev["type"], ev))
        return b"".join(out)

    def finish(self) -> bytes:
        return b""


class ResponsesPassthrough:
    """Responses upstream -> Responses client: bytes untouched; usage and completion read on the way.

    ``ok`` only once ``response.completed`` (or ``incomplete``) was seen: a stream that ends without
    it is a broken attempt (Codex resends it) and ends with ``response.failed``.
    """

    __slots__ = ("usage", "ok", "output_chars", "_parser", "_failed", "_seq")

    def __init__(self) -> None:
        self.usage: dict[str, Any] = {}
        self.ok = False
        self.output_chars = 0
        self._parser = SSEParser()
        self._failed = False
        self._seq = 0

    def feed(self, chunk: bytes) -> bytes:
        for ev in self._parser.feed(chunk):
            self._observe(ev.data)
        return chunk

    def _observe(self, data: str) -> None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        seq = payload.get("sequence_number")
        if isinstance(seq, int):
            self._seq = seq + 1
        kind = payload.get("type")
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta",
                    "response.reasoning_summary_text.delta"):
            delta = payload.get("delta")
            self.output_chars += len(delta) if isinstance(delta, str) else 0
        elif kind in _TERMINAL:
            response = payload.get("response") or {}
            self.usage = usage_from_responses(response.get("usage") if isinstance(response, dict) else None)
            self.ok = not self._failed
        elif kind in ("response.failed", "error"):
            self._failed = True
            self.ok = False

    def end(self) -> bytes:
        for ev in self._parser.close():
            self._observe(ev.data)
        if self.ok or self._failed:
            return b""
        self._failed = True
        return self._failed_event("the upstream stream ended before the response was complete")

    def fail(self, err: Any) -> bytes:
        self.ok = False
        self._failed = True
        return self._failed_event(str(getattr(err, "message", err)))

    def _failed_event(self, message: str) -> bytes:
        stream = MessagesToResponsesStream("")
        event = stream.fail(message)[-1]
        event["sequence_number"] = self._seq
        return frame(event["type"], event)
