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


def rename_model(payload: dict[str, Any], model: str) -> None:
    """Name the model the client asked for in a Responses object or an event carrying one."""
    target = payload.get("response") if isinstance(payload.get("response"), dict) else payload
    if isinstance(target, dict) and "model" in target:
        target["model"] = model


class ResponsesSink:
    """Anthropic events -> Responses SSE frames (``event: <type>`` + ``data:``, no ``[DONE]``)."""

    keepalive = b": keepalive\n\n"  # an SSE comment: the openai SDK and Codex skip it

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
    """Responses upstream -> Responses client: bytes untouched (unless the gateway renamed the model
    on the way up: then each frame is re-encoded with the name the client asked for); usage and
    completion read on the way.

    ``ok`` only once ``response.completed`` (or ``incomplete``) was seen: a stream that ends without
    it is a broken attempt (Codex resends it) and ends with ``response.failed``.
    """

    __slots__ = ("usage", "ok", "output_chars", "_parser", "_failed", "_seq", "_rename", "_response")
    keepalive = None  # the upstream's own stream, passed through

    def __init__(self, rename: str | None = None) -> None:
        self.usage: dict[str, Any] = {}
        self.ok = False
        self.output_chars = 0
        self._parser = SSEParser()
        self._failed = False
        self._seq = 0
        self._rename = rename
        self._response: dict[str, Any] | None = None  # as response.created described it

    def feed(self, chunk: bytes) -> bytes:
        events = self._parser.feed(chunk)
        if self._rename is None:
            for ev in events:
                self._observe(ev.data)
            return chunk
        out = []
        for ev in events:
            payload = self._observe(ev.data)
            if payload is None:
                out.append(b"event: " + ev.event.encode() + b"\ndata: " + ev.data.encode() + b"\n\n")
                continue
            rename_model(payload, self._rename)
            out.append(frame(ev.event or str(payload.get("type")), payload))
        return b"".join(out)

    def _observe(self, data: str) -> dict[str, Any] | None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        seq = payload.get("sequence_number")
        if isinstance(seq, int):
            self._seq = seq + 1
        kind = payload.get("type")
        if kind == "response.created" and isinstance(payload.get("response"), dict):
            self._response = dict(payload["response"])
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
        return payload

    def end(self) -> bytes:
        tail = b""
        for ev in self._parser.close():
            payload = self._observe(ev.data)
            if self._rename is not None and payload is not None:
                rename_model(payload, self._rename)
                tail += frame(ev.event or str(payload.get("type")), payload)
        if self.ok or self._failed:
            return tail
        self._failed = True
        return tail + self._failed_event("the upstream stream ended before the response was complete")


    def fail(self, err: Any) -> bytes:
        self.ok = False
        self._failed = True
        return self._failed_event(str(getattr(err, "message", err)))

    def _failed_event(self, message: str) -> bytes:
        event = MessagesToResponsesStream("").fail(message)[-1]
        if self._response is not None:  # the same response, now failed (clients check its identity)
            event["response"] = {**self._response, "status": "failed", "error": event["response"]["error"]}
            if self._rename is not None:
                rename_model(event, self._rename)
        event["sequence_number"] = self._seq
        return frame(event["type"], event)
