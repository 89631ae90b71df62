"""Relays for the OpenAI Chat wire: the passthrough (Chat client, Chat upstream) and the sink that
turns Anthropic events into ``chat.completion.chunk`` frames."""

from __future__ import annotations

from typing import Any

import orjson

from bytespike.errors import GatewayError
from bytespike.protocols.base import Events
from bytespike.protocols.hub import token_units, usage_from_openai
from bytespike.protocols.openai_chat.inbound import MessagesToChatStream
from bytespike.protocols.sse import SSEParser


class OpenAIPassthrough:
    """OpenAI upstream -> OpenAI client: bytes untouched, unless the gateway must hold back the
    usage chunk it asked for on the client's behalf, or put back the model name the client asked
    for (the gateway renamed it on the way up); then frames are re-encoded one by one."""

    __slots__ = ("usage", "ok", "output_chars", "_parser", "_strip_usage", "_model", "_buf")
    keepalive = None  # the upstream's own stream, passed through

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
                self.output_chars += token_units(content)
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



class ChatSink:
    """Anthropic events -> OpenAI chat.completion.chunk frames, ``[DONE]`` at the end."""

    keepalive = b": keepalive\n\n"  # an SSE comment: OpenAI's SDKs skip it

    def __init__(self, model: str, include_usage: bool) -> None:
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
