"""A small keep-alive HTTP/1.1 load generator on uvloop and httptools, counted in requests.

Used where wrk does not fit: latency at concurrency 1 (per-request total time and time to the
first response byte, every answer checked) and the soak (an exact number of requests, rotating
over several routes, with a callback as it passes each milestone). Its own cost per request is a
few tens of microseconds, the same whether it calls the gateway or the upstream directly.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

from payloads import Target


def request_bytes(host: str, target: Target) -> bytes:
    head = [f"POST {target.path} HTTP/1.1", f"host: {host}", f"content-length: {len(target.body)}"]
    head += [f"{k}: {v}" for k, v in target.headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + target.body


class BadAnswer(Exception):
    """A response that was not a 200 carrying the expected bytes."""


class _Conn(asyncio.Protocol):
    """One connection; ``exchange`` sends a request and waits for the whole answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[tuple[int, bytes]] | None = None
        self.first_byte = 0
        self.body: list[bytes] = []
        self.keep_alive = True
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        if not self.first_byte:
            self.first_byte = time.perf_counter_ns()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done is not None and not self.done.done():
                self.done.set_exception(BadAnswer(f"unparseable response: {exc}"))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.done is not None and not self.done.done():
            self.done.set_result((self.parser.get_status_code(), b"".join(self.body)))

    async def exchange(self, req: bytes) -> tuple[int, bytes, int, int]:
        """Send one request; returns (status, body, sent_ns, first_byte_ns)."""
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.first_byte = 0
        self.body = []
        sent = time.perf_counter_ns()
        self.transport.write(req)
        status, body = await self.done
        return status, body, sent, self.first_byte


class Client:
    """A reconnecting keep-alive connection to one host."""

    def __init__(self, base_url: str) -> None:
        u = urlsplit(base_url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.netloc = u.netloc
        self._conn: _Conn | None = None

    async def _connect(self) -> _Conn:
        if self._conn is None or self._conn.lost or not self._conn.keep_alive:
            if self._conn is not None and self._conn.transport is not None:
                self._conn.transport.close()
            _, self._conn = await asyncio.get_running_loop().create_connection(_Conn, self.host, self.port)
        return self._conn

    async def call(self, req: bytes, expect: bytes) -> tuple[int, int]:
        """One checked request; returns (total_ns, ttfb_ns)."""
        conn = await self._connect()
        status, body, sent, first = await conn.exchange(req)
        done = time.perf_counter_ns()
        if status != 200 or expect not in body:
            raise BadAnswer(f"HTTP {status}: {body[:300]!r}")
        return done - sent, first - sent

    def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None


@dataclass
class Latencies:
    """Per-request times in nanoseconds, sorted, and how many requests failed."""

    total_ns: list[int] = field(default_factory=list)
    ttfb_ns: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def pct(self, p: float, ttfb: bool = False) -> float:
        """The p-th percentile in milliseconds (nearest rank)."""
        xs = self.ttfb_ns if ttfb else self.total_ns
        if not xs:
            return float("nan")
        i = min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))
        return xs[i] / 1e6


async def latency(base_url: str, target: Target, requests: int, warmup: int,
                  max_seconds: float = math.inf) -> Latencies:
    """``requests`` sequential calls on one keep-alive connection, after ``warmup`` unrecorded ones.

    Stops early, with fewer samples, once ``max_seconds`` have passed after the warm-up.
    """
    client = Client(base_url)
    req = request_bytes(client.netloc, target)
    out = Latencies()
    deadline = math.inf
    try:
        for i in range(warmup + requests):
            if i == warmup:
                deadline = time.perf_counter() + max_seconds
            elif i > warmup and time.perf_counter() > deadline:
                break
            try:
                total, ttfb = await client.call(req, target.expect)
            except (BadAnswer, ConnectionError) as exc:
                out.errors += 1
                out.first_error = out.first_error or str(exc)
                client.close()
                continue
            if i >= warmup:
                out.total_ns.append(total)
                out.ttfb_ns.append(ttfb)
    finally:
        client.close()
    out.total_ns.sort()
    out.ttfb_ns.sort()
    return out


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    first_error: str | None


async def load(base_url: str, targets: Sequence[Target], total: int, concurrency: int,
               on_progress: Callable[[int], None] | None = None, every: int = 0) -> LoadResult:
    """``total`` requests over ``concurrency`` connections, rotating over ``targets``.

    ``on_progress(done)`` is called each time ``every`` more requests have completed.
    """
    host = Client(base_url).netloc
    reqs = [(request_bytes(host, t), t.expect) for t in targets]
    issued = 0
    completed = 0
    errors = 0
    first_error: str | None = None

    async def worker() -> None:
        nonlocal issued, completed, errors, first_error
        client = Client(base_url)
        try:
            while issued < total:
                req, expect = reqs[issued % len(reqs)]
                issued += 1
                try:
                    await client.call(req, expect)
                except (BadAnswer, ConnectionError) as exc:
                    errors += 1
                    first_error = first_error or str(exc)
                    client.close()
                completed += 1
                if on_progress is not None and every and completed % every == 0:
                    on_progress(completed)
        finally:
            client.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(completed, time.perf_counter() - t0, errors, first_error)
