"""A fake upstream provider for tests: real HTTP on loopback, scripted answers, recorded requests.

Tests queue answers (a status, headers, and a body given whole or as chunks with optional
pauses, or a dropped connection) and read back every request it received. With nothing queued it
answers like the built-in simulator, in each vendor's real wire format.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from bytespike.demo import simulator


@dataclass
class Answer:
    status: int = 200
    body: bytes | None = None
    chunks: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay_before: float = 0.0  # before the response starts (first byte)
    delay_between: float = 0.0  # between chunks
    stall_after: int | None = None  # stop sending (but keep the connection) after this many chunks
    cut_after: int | None = None  # drop the connection after this many chunks
    refuse: bool = False  # close the connection without answering


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def sse_answer(text: str, *, chunk_size: int | None = None, **kw: Any) -> Answer:
    data = text.encode()
    if chunk_size:
        chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    else:
        chunks = [data]
    return Answer(chunks=chunks, content_type="text/event-stream; charset=utf-8", **kw)


def json_answer(obj: Any, status: int = 200, **kw: Any) -> Answer:
    return Answer(status=status, body=orjson.dumps(obj), **kw)


class FakeUpstream:
    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self._queue: deque[Answer] = deque()
        self.handler: Any = None  # optional callable(Received) -> Answer | None, consulted before the queue
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0  # the most answered at once since the last reset
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ scripting

    def queue(self, *answers: Answer) -> None:
        with self._lock:
            self._queue.extend(answers)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.received.clear()
            self.handler = None
            self.max_in_flight = self.in_flight

    def requests_to(self, fragment: str) -> list[Received]:
        return [r for r in self.received if fragment in r.path]

    # ------------------------------------------------------------ serving

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        got = Received(scope["method"], scope["path"], scope["query_string"].decode(), headers, body)
        with self._lock:
            self.received.append(got)
            answer = self.handler(got) if self.handler is not None else None
            if answer is None and self._queue:
                answer = self._queue.popleft()
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if answer is None:
                await simulator.app(scope, _replay_body(body), send)
                return
            await self._answer(answer, send)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, a: Answer, send: Any) -> None:
        if a.delay_before:
            await asyncio.sleep(a.delay_before)
        if a.refuse:
            raise _Drop()
        hdrs = [(b"content-type", a.content_type.encode())] + [(k.encode(), v.encode()) for k, v in a.headers.items()]
        await send({"type": "http.response.start", "status": a.status, "headers": hdrs})
        if a.chunks is None:
            await send({"type": "http.response.body", "body": a.body or b""})
            return
        for i, c in enumerate(a.chunks):
            if a.cut_after is not None and i >= a.cut_after:
                raise _Drop()
            if a.stall_after is not None and i >= a.stall_after:
                await asyncio.sleep(3600)
            if i and a.delay_between:
                await asyncio.sleep(a.delay_between)
            await send({"type": "http.response.body", "body": c, "more_body": True})
        if a.cut_after is not None and a.cut_after >= len(a.chunks):
            raise _Drop()
        await send({"type": "http.response.body", "body": b""})

    def start(self) -> FakeUpstream:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="critical", lifespan="on",
                                loop="asyncio", http="h11")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Drop(Exception):
    """Raised inside the ASGI app to make the server drop the connection."""


def _replay_body(body: bytes) -> Any:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    return receive


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
