"""Byte streams for Gemini clients: a native Gemini upstream relayed untouched, or Messages events
rendered as Gemini chunks. Both keep what settlement needs (usage in Anthropic's split, whether
the answer ended properly, output size) and end a broken stream with Gemini's error object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bytespike.errors import GatewayError
from bytespike.protocols.gemini.inbound.common import error_object
from bytespike.protocols.gemini.inbound.stream import GeminiFraming, MessagesToGeminiStream
from bytespike.protocols.hub import empty_usage, mapping, usage_from_gemini
from bytespike.protocols.sse import SSEParser

_INCOMPLETE = "the upstream stream ended before the answer was complete"


class JSONArrayScanner:
    """Feed the bytes of a streamed JSON array, get each top-level element's bytes once it is whole."""

    __slots__ = ("_buf", "_depth", "_in_string", "_escape", "_start", "opened", "closed")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._start = -1
        self.opened = False
        self.closed = False

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        for byte in chunk:
            if self.closed:
                break
            if self._start >= 0:
                self._buf.append(byte)
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif byte == 0x5C:  # backslash
                    self._escape = True
                elif byte == 0x22:
                    self._in_string = False
                continue
            if byte == 0x22:
                self._in_string = True
            elif byte in (0x7B, 0x5B):  # { [
                if not self.opened:
                    self.opened = True
                    continue
                if self._depth == 0:
                    self._start = 0
                    self._buf = bytearray([byte])
                self._depth += 1
            elif byte in (0x7D, 0x5D):  # } ]
                if self._depth == 0:
                    self.closed = self.opened
                    continue
                self._depth -= 1
                if self._depth == 0:
                    out.append(bytes(self._buf))
                    self._buf = bytearray()
                    self._start = -1
        return out


class GeminiPassthrough:
    """Gemini upstream -> Gemini client: the bytes go through untouched (SSE or JSON array)."""

    __slots__ = ("usage", "ok", "output_chars", "_sse", "_parser", "_scanner", "_errored")
    keepalive = None  # the upstream's own stream, passed through

    def __init__(self, sse: bool) -> None:
        self.usage: dict[str, Any] = empty_usage()
        self.ok = False
        self.output_chars = 0
        self._sse = sse
        self._parser = SSEParser()
        self._scanner = JSONArrayScanner()
        self._errored = False

    def feed(self, chunk: bytes) -> bytes:
        if self._sse:
            for ev in self._parser.feed(chunk):
                self._observe(ev.data.encode())
        else:
            for element in self._scanner.feed(chunk):
                self._observe(element)
        return chunk

    def _observe(self, data: bytes) -> None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, Mapping):
            return
        if payload.get("error"):
            self._errored = True
            self.ok = False
            return
        if isinstance(payload.get("usageMetadata"), Mapping):
            self.usage = usage_from_gemini(payload["usageMetadata"])
        for candidate in payload.get("candidates") or ():
            candidate = mapping(candidate)
            for part in mapping(candidate.get("content")).get("parts") or ():
                text = mapping(part).get("text")
                if isinstance(text, str):
                    self.output_chars += len(text)
                elif "functionCall" in mapping(part):
                    self.output_chars += len(orjson.dumps(mapping(part)["functionCall"]))
            if candidate.get("finishReason") and not self._errored:
                self.ok = True
        if isinstance(payload.get("promptFeedback"), Mapping) and payload["promptFeedback"].get("blockReason"):
            self.ok = not self._errored

    def end(self) -> bytes:
        if self._sse:
            for ev in self._parser.close():
                self._observe(ev.data.encode())
        if self.ok or self._errored:
            return b""
        return self._error_tail(GatewayError("api_error", _INCOMPLETE))

    def fail(self, err: GatewayError) -> bytes:
        self.ok = False
        return self._error_tail(err)

    def _error_tail(self, err: GatewayError) -> bytes:
        payload = orjson.dumps(error_object(err))
        if self._sse:
            return b"data: " + payload + b"\r\n\r\n"
        if self._scanner.closed:
            return b""
        return (b",\r\n" if self._scanner.opened else b"[") + payload + b"]"


class GeminiSink:
    """Messages events -> Gemini chunks as bytes (the client side of a translated relay)."""

    def __init__(self, model: str, sse: bool, include_thoughts: bool) -> None:
        self._stream = MessagesToGeminiStream(model, include_thoughts)
        self._framing = GeminiFraming(sse)

    @property
    def keepalive(self) -> bytes:
        """Whitespace between the elements of a JSON array; nothing in SSE, where Gemini's SDK parsers
        take every line that is not ``data:`` as the start of an error object."""
        return b"" if self._framing.sse else b"\n"

    def events(self, events: list[tuple[str, dict[str, Any]]]) -> bytes:
        out: list[bytes] = []
        for name, data in events:
            if name == "error":
                err = mapping(data.get("error"))
                failure = GatewayError(str(err.get("type") or "api_error"),
                                       str(err.get("message") or "the upstream stream failed"))
                self._stream.finished = True
                out.append(self._framing.error(error_object(failure)))
                continue
            out.append(self._framing.chunks(self._stream.feed(name, data)))
        return b"".join(out)

    def finish(self) -> bytes:
        return self._framing.chunks(self._stream.finish()) + self._framing.close()
