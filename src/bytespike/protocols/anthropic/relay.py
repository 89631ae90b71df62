"""Relays for the Anthropic Messages wire: the byte-for-byte passthrough (Anthropic client,
Anthropic upstream), an Anthropic upstream read as an event source, and the Anthropic sink."""

from __future__ import annotations

from typing import Any

import orjson

from bytespike.errors import GatewayError
from bytespike.protocols.base import Events
from bytespike.protocols.hub import delta_chars, merge_usage
from bytespike.protocols.sse import SSEParser, frame


class AnthropicPassthrough:
    """Anthropic upstream -> Anthropic client: bytes untouched, except ``model`` in message_start
    when the gateway changed it on the way up (an alias)."""

    __slots__ = ("usage", "ok", "output_chars", "_parser", "_rewrite", "_held", "_errored")
    keepalive = None  # Anthropic sends its own pings

    def __init__(self, rewrite_model: str | None) -> None:
        self.usage: dict[str, Any] = {}
        self.ok = False
        self.output_chars = 0
        self._parser = SSEParser()
        self._rewrite = rewrite_model
        self._held = b""
        self._errored = False

    def feed(self, chunk: bytes) -> bytes:
        for ev in self._parser.feed(chunk):
            self._observe(ev.event, ev.data)
        if self._rewrite is None:
            return chunk
        # Hold bytes until the first frame (message_start) is whole, then rewrite just that frame.
        buf = self._held + chunk
        end = _frame_end(buf)
        if end < 0:
            self._held = buf
            return b""
        first, rest = buf[:end], buf[end:]
        self._held = b""
        name = self._rewrite
        self._rewrite = None
        return _rewrite_message_start(first, name) + rest

    def _observe(self, event: str, data: str) -> None:
        if event == "content_block_delta":
            try:
                self.output_chars += delta_chars(orjson.loads(data))
            except orjson.JSONDecodeError:
                pass
            return
        if event in ("message_start", "message_delta"):
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                return
            usage = payload.get("message", {}).get("usage") if event == "message_start" else payload.get("usage")
            merge_usage(self.usage, usage)
        elif event == "message_stop":
            self.ok = not self._errored
        elif event == "error":
            self._errored = True
            self.ok = False

    def end(self) -> bytes:
        for ev in self._parser.close():
            self._observe(ev.event, ev.data)
        out = self._held
        self._held = b""
        if not self.ok and not self._errored:
            out += GatewayError("api_error", "the upstream stream ended before the message was complete").anthropic_event()
        return out

    def fail(self, err: GatewayError) -> bytes:
        self.ok = False
        return self._held + err.anthropic_event()


def _frame_end(buf: bytes) -> int:
    i = buf.find(b"\n\n")
    j = buf.find(b"\r\n\r\n")
    if i < 0 and j < 0:
        return -1
    if j >= 0 and (i < 0 or j < i):
        return j + 4
    return i + 2


def _rewrite_message_start(frame_bytes: bytes, model: str) -> bytes:
    parser = SSEParser()
    events = parser.feed(frame_bytes) + parser.close()
    if len(events) != 1 or events[0].event != "message_start":
        return frame_bytes
    try:
        data = orjson.loads(events[0].data)
        data["message"]["model"] = model
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return frame_bytes
    return frame("message_start", data)



class AnthropicSource:
    """An Anthropic upstream seen as an event source (for clients of another protocol)."""

    def __init__(self) -> None:
        self.usage: dict[str, Any] = {}
        self.completed = False
        self.failed = False

    def feed_event(self, name: str, data: str) -> Events:
        if name in ("ping", "") or not data:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(payload, dict):
            return []
        if name == "message_start":
            merge_usage(self.usage, (payload.get("message") or {}).get("usage"))
        elif name == "message_delta":
            merge_usage(self.usage, payload.get("usage"))
        elif name == "message_stop":
            self.completed = True
        elif name == "error":
            self.completed = False
        return [(name, payload)]

    def finish(self) -> Events:
        return []

    def fail(self, error_type: str, message: str) -> Events:
        return [("error", {"type": "error", "error": {"type": error_type, "message": message}})]


class AnthropicSink:
    keepalive = b'event: ping\ndata: {"type": "ping"}\n\n'

    def events(self, events: Events) -> bytes:
        return b"".join(frame(name, data) for name, data in events)

    def finish(self) -> bytes:
        return b""
