"""uvicorn's httptools protocol with the bounds a public gateway needs before it knows the caller.

uvicorn buffers request headers without limit and has no deadline for them, for a body, or for a
client that stops reading. Here each connection gets (``server.*`` settings, README "Security and
limits"): at most ``max_header_bytes`` of request line and headers and ``max_headers`` header
lines (431 past either), ``header_timeout`` seconds from connecting or from its previous answer
until its headers are complete, ``body_timeout`` seconds for a body once the headers are in, and
``write_timeout`` seconds of a full send buffer before it is cut off. Every expiry closes the
connection; the request it was carrying sees a disconnect and is settled as such.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bytespike.config import ServerLimits


def limits_from_env(env: dict[str, str] | os._Environ[str] | None = None) -> ServerLimits:
    """The bounds ``bytespike serve`` passed to its workers in ``BYTESPIKE_SERVE``."""
    raw = (env if env is not None else os.environ).get("BYTESPIKE_SERVE", "")
    given = orjson.loads(raw).get("limits") if raw else None
    return ServerLimits(**given) if isinstance(given, dict) else ServerLimits()


def _refusal(status: int, reason: bytes, message: str) -> bytes:
    body = orjson.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, len(body))) + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bounds = limits_from_env()
        self._in_head = True
        self._head_bytes = 0
        self._head_lines = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._write_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        room = self.bounds.max_header_bytes - self._head_bytes
        first, rest = (data, b"") if len(data) <= room else (data[:room], data[room:])
        self._head_bytes += len(first)
        super().data_received(first)
        if self.transport.is_closing():
            return
        if self._head_lines > self.bounds.max_headers:
            self._refuse(431, b"Request Header Fields Too Large",
                         f"more than {self.bounds.max_headers} request headers")
            return
        if rest:
            if self._in_head:
                self._refuse(431, b"Request Header Fields Too Large",
                             f"request headers exceed {self.bounds.max_header_bytes} bytes")
                return
            self.data_received(rest)

    def _refuse(self, status: int, reason: bytes, message: str) -> None:
        self.transport.write(_refusal(status, reason, message))
        self.transport.close()

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_lines = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_lines += 1
        if self._head_lines <= self.bounds.max_headers:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._head_lines > self.bounds.max_headers:
            return  # refused in data_received; no application call
        super().on_headers_complete()
        # Until the message's end (at once for a request without a body).
        self._body_timer = self.loop.call_later(self.bounds.body_timeout, self._expired)

    def on_body(self, body: bytes) -> None:
        if self._head_lines <= self.bounds.max_headers:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._head_lines <= self.bounds.max_headers:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head()

    # ------------------------------------------------------------ deadlines

    def _arm_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.bounds.header_timeout, self._expired)

    def _expired(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.bounds.write_timeout, self._cut_off)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _cut_off(self) -> None:
        self._write_timer = None
        self.transport.abort()
