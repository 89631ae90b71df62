"""Incremental Server-Sent Events parsing and framing.

Upstreams split frames at arbitrary byte boundaries and pad ``data:`` payloads with spaces; some
(Gemini) end lines with CRLF. The parser accepts every byte split and every line ending.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(slots=True)
class Event:
    """One SSE frame: its ``event:`` name (empty when absent) and joined ``data:`` lines."""

    event: str
    data: str

    def json(self) -> object:
        return orjson.loads(self.data)


class SSEParser:
    """Feed bytes, get whole events. Keeps the unfinished tail between calls."""

    __slots__ = ("_buf", "_event", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        buf = self._buf + chunk if self._buf else chunk
        out: list[Event] = []
        start = 0
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            self._line(line, out)
        self._buf = buf[start:]
        return out

    def close(self) -> list[Event]:
        """Flush what is left at the end of the stream (a last frame without its blank line)."""
        out: list[Event] = []
        if self._buf:
            line = self._buf.rstrip(b"\r")
            self._buf = b""
            self._line(line, out)
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[Event]) -> None:
        if not line:
            if self._data or self._event:
                out.append(Event(self._event, "\n".join(self._data)))
            self._event = ""
            self._data = []
            return
        if line[:1] == b":":
            return
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif field == b"event":
            self._event = value.decode("utf-8", "replace").strip()


def frame(event: str | None, data: object) -> bytes:
    """One SSE frame with a JSON payload; ``event`` None gives a data-only frame (OpenAI style)."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
