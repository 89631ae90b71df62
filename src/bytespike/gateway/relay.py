"""Streams from upstream to client.

A relay takes upstream bytes and gives client bytes, and keeps what settlement needs: the usage
seen so far (always in Anthropic's split) and whether the stream ended properly. Native relays
pass bytes through untouched; translated relays go upstream protocol -> Anthropic events ->
client protocol, so the Messages shape is the one hub every translation goes through.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from bytespike.errors import GatewayError
from bytespike.protocols.hub import usage_from_openai
from bytespike.protocols.sse import SSEParser, frame

Events = list[tuple[str, dict[str, Any]]]


class Relay(Protocol):
    """What the pipeline reads while relaying: usage so far (Anthropic split), whether the stream
    ended properly, and output size so far."""

    @property
    def usage(self) -> dict[str, Any]: ...
    @property
    def ok(self) -> bool: ...

    output_chars: int

    def feed(self, chunk: bytes) -> bytes: ...
    def end(self) -> bytes: ...
    def fail(self, err: GatewayError) -> bytes: ...


def delta_chars(event: dict[str, Any]) -> int:
    """Characters of generated output one ``content_block_delta`` carries (text, thinking, tool JSON)."""
    delta = event.get("delta")
    if not isinstance(delta, dict):
        return 0
    for field in ("text", "partial_json", "thinking"):
        value = delta.get(field)
        if isinstance(value, str):
            return len(value)
    return 0


def merge_usage(into: dict[str, Any], usage: dict[str, Any] | None) -> None:
    """Anthropic usage is cumulative: later values replace earlier ones, field by field."""
    if not usage:
        return
    for k, v in usage.items():
        if v is not None:
            into[k] = v


# ---------------------------------------------------------------- native relays


class AnthropicPassthrough:
    """Anthropic upstream -> Anthropic client: bytes untouched, except ``model`` in message_start
    when the gateway changed it on the way up (an alias)."""

    __slots__ = ("usage", "ok", "output_chars", "_parser", "_rewrite", "_held", "_errored")

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


class OpenAIPassthrough:
    """OpenAI upstream -> OpenAI client: bytes untouched, unless the gateway must hold back the
    usage chunk it asked for on the client's behalf, or put back the model name the client asked
    for (the gateway renamed it on the way up); then frames are re-encoded one by one."""

    __slots__ = ("usage", "ok", "output_chars", "_parser", "_strip_usage", "_model", "_buf")

    def __init__(self, client_wants_usage: bool, rewrite_model: str | None = None) -> None:
        self.usage: dict[str, Any] = {}
        self.ok = False
        self.output_chars = 0
        self._parser = SSEParser()
        self._strip_usage = not client_wants_usage
        self._model = rewrite_model
        self._buf = b""

    def feed(self, chunk: bytes) -> bytes:
        events = self._parser.feed(chunk)
        if not self._strip_usage and self._model is None:
            for ev in events:
                self._observe(ev.data)
            return chunk
        out: list[bytes] = []
        for ev in events:
            payload = self._observe(ev.data)
            if payload is None:
                out.append(b"data: " + ev.data.encode() + b"\n\n")
                continue
            if self._strip_usage and payload.get("usage") and not payload.get("choices"):
                continue
            if self._model is not None and "model" in payload:
                payload["model"] = self._model
            out.append(b"data: " + orjson.dumps(payload) + b"\n\n")
        return b"".join(out)

    def _observe(self, data: str) -> dict[str, Any] | None:
        if data == "[DONE]":
            self.ok = True
            return None
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        if "error" in payload and "choices" not in payload:
            self.ok = False
            return payload
        for choice in payload.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.output_chars += len(content)
        u = payload.get("usage")
        if u:
            self.usage = usage_from_openai(u)
        return payload

    def end(self) -> bytes:
        tail = b""
        for ev in self._parser.close():
            self._observe(ev.data)
            tail += b"data: " + ev.data.encode() + b"\n\n" if (self._strip_usage or self._model) else b""
        if not self.ok:
            tail += GatewayError("api_error", "the upstream stream ended before the completion was complete").openai_event()
        return tail

    def fail(self, err: GatewayError) -> bytes:
        self.ok = False
        return err.openai_event()


# ---------------------------------------------------------------- translated relays


class EventSource(Protocol):
    """Upstream side: one parsed upstream SSE payload in, Anthropic events out."""

    usage: dict[str, Any]
    completed: bool

    def feed(self, chunk: dict[str, Any]) -> Events: ...
    def finish(self) -> Events: ...
    def fail(self, error_type: str, message: str) -> Events: ...


class AnthropicEvents:
    """An Anthropic upstream seen as an event source (for clients of another protocol)."""

    def __init__(self) -> None:
        self.usage: dict[str, Any] = {}
        self.completed = False

    def feed_event(self, name: str, data: dict[str, Any]) -> Events:
        if name == "message_start":
            merge_usage(self.usage, (data.get("message") or {}).get("usage"))
        elif name == "message_delta":
            merge_usage(self.usage, data.get("usage"))
        elif name == "message_stop":
            self.completed = True
        elif name == "error":
            self.completed = False
        return [(name, data)]

    def finish(self) -> Events:
        return []

    def fail(self, error_type: str, message: str) -> Events:
        return [("error", {"type": "error", "error": {"type": error_type, "message": message}})]


class Sink(Protocol):
    """Client side: Anthropic events in, client bytes out."""

    def events(self, events: Events) -> bytes: ...
    def finish(self) -> bytes: ...


class AnthropicSink:
    def events(self, events: Events) -> bytes:
        return b"".join(frame(name, data) for name, data in events)

    def finish(self) -> bytes:
        return b""


class TranslatedRelay:
    """Upstream SSE -> (source) Anthropic events -> (sink) client bytes."""

    def __init__(self, source: Any, sink: Any, anthropic_upstream: bool = False) -> None:
        self._parser = SSEParser()
        self._source = source
        self._sink = sink
        self._anthropic = anthropic_upstream
        self.output_chars = 0
        self._failed = False
        self._done = False

    @property
    def usage(self) -> dict[str, Any]:
        return self._source.usage

    @property
    def ok(self) -> bool:
        return self._complete() and not self._failed

    def _complete(self) -> bool:
        return bool(self._source.completed) or self._done

    def feed(self, chunk: bytes) -> bytes:
        out: Events = []
        for ev in self._parser.feed(chunk):
            out.extend(self._one(ev.event, ev.data))
        if not out:
            return b""
        for name, data in out:
            if name == "content_block_delta":
                self.output_chars += delta_chars(data)
        return self._sink.events(out)

    def _one(self, name: str, data: str) -> Events:
        if data == "[DONE]":
            self._done = True
            return []
        if not data:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if self._anthropic:
            if name in ("ping", ""):
                return []
            return self._source.feed_event(name, payload)
        if isinstance(payload, dict) and "error" in payload and not payload.get("choices") \
                and not payload.get("candidates"):
            err = payload["error"] if isinstance(payload["error"], dict) else {}
            self._failed = True
            return self._source.fail("api_error", str(err.get("message") or "the upstream stream failed"))
        return self._source.feed(payload)

    def end(self) -> bytes:
        out: Events = []
        for ev in self._parser.close():
            out.extend(self._one(ev.event, ev.data))
        if self._failed:
            return self._sink.events(out)
        if not self._complete():
            out.extend(self._source.fail("api_error", "the upstream stream ended before the message was complete"))
            self._failed = True
            return self._sink.events(out)
        out.extend(self._source.finish())
        return self._sink.events(out) + self._sink.finish()

    def fail(self, err: GatewayError) -> bytes:
        self._failed = True
        return self._sink.events(self._source.fail(err.type, err.message))


class ChatSink:
    """Anthropic events -> OpenAI chat.completion.chunk frames, ``[DONE]`` at the end."""

    def __init__(self, model: str, include_usage: bool) -> None:
        from bytespike.protocols.openai_chat.inbound import MessagesToChatStream

        self._stream = MessagesToChatStream(model, include_usage)

    def events(self, events: Events) -> bytes:
        out: list[bytes] = []
        for name, data in events:
            if name == "error":
                err = data.get("error") or {}
                payload = self._stream.fail(str(err.get("message", "upstream error")), str(err.get("type", "api_error")))
                out.append(b"data: " + orjson.dumps(payload) + b"\n\n")
                continue
            for chunk in self._stream.feed(name, data):
                out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        return b"".join(out)

    def finish(self) -> bytes:
        chunks = self._stream.finish()
        return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
