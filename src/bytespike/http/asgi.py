"""Small ASGI helpers for the hot path: read a bounded body, send a whole response."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from bytespike.errors import GatewayError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON = b"application/json"
SSE = b"text/event-stream; charset=utf-8"


def request_params(scope: Scope) -> dict[str, str]:
    """The query's parameters (first value of each) and the route's path parameters, which win."""
    query = scope.get("query_string", b"")
    params = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}
    params.update(scope.get("path_params") or {})
    return params


def header_map(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope["headers"]}


async def read_body(receive: Receive, limit: int, declared: bytes | None, timeout: float | None = None) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (checked before reading when declared)
    and with 408 when it takes longer than ``timeout`` seconds to arrive (a body in one piece never
    starts the clock)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError("request_too_large", f"request body exceeds the {limit} byte limit")
    chunks: list[bytes] = []
    more = await _take(await receive(), chunks, limit, 0)
    if more is None:
        return chunks[0] if len(chunks) == 1 else b""
    try:
        async with asyncio.timeout(timeout):
            while more is not None:
                more = await _take(await receive(), chunks, limit, more)
    except TimeoutError:
        raise GatewayError("timeout_error", f"the request body did not arrive within {timeout:g} seconds",
                           status=408, headers={"connection": "close"}) from None
    return b"".join(chunks)


async def _take(msg: MutableMapping[str, Any], chunks: list[bytes], limit: int, size: int) -> int | None:
    """Add one body message; returns the size so far, or None when the body is complete."""
    if msg["type"] == "http.disconnect":
        raise ConnectionResetError("client went away while sending the body")
    body = msg.get("body", b"")
    if body:
        size += len(body)
        if size > limit:
            raise GatewayError("request_too_large", f"request body exceeds the {limit} byte limit",
                               headers={"connection": "close"})
        chunks.append(body)
    return size if msg.get("more_body") else None


def headers_list(content_type: bytes, request_id: str, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    h = [(b"content-type", content_type), (b"request-id", request_id.encode())]
    if extra:
        h.extend((k.encode(), str(v).encode()) for k, v in extra.items())
    return h


async def send_body(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, data: Any, request_id: str, extra: dict[str, str] | None = None) -> None:
    await send_body(send, status, orjson.dumps(data), headers_list(JSON, request_id, extra))
