"""Structured logs: every ``bytespike`` log record as one JSON line, and one line per request.

A request line carries ids, model, provider, status, timings, tokens and cost. It never carries
credentials (only the key's id) and carries the request body only when the operator turns on
``logging: {prompts: true}``. Lines are written by background threads so a slow log sink never
stalls the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import queue
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

import orjson

from bytespike.billing import money

if TYPE_CHECKING:
    from bytespike.gateway.call import Call

REQUEST_LOGGER = "bytespike.requests"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg" | request fields, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["msg"] = record.getMessage()
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _DeferredQueueHandler(logging.handlers.QueueHandler):
    """Queues records as they are: formatting happens in the writer thread, off the request path."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class LogSink:
    """Routes the ``bytespike`` logger tree through a queue to a JSON writer thread; ``close``
    drains it. Built in the app's lifespan, never at import."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._root = logging.getLogger("bytespike")
        self._q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        out = logging.StreamHandler(stream or sys.stderr)
        out.setFormatter(JsonFormatter())
        self._handler = _DeferredQueueHandler(self._q)
        self._listener = logging.handlers.QueueListener(self._q, out)
        self._was = (self._root.level, self._root.propagate)
        self._root.addHandler(self._handler)
        self._root.setLevel(logging.INFO)
        self._root.propagate = False
        self._listener.start()

    def close(self) -> None:
        """Write what is queued, then give the logger back as it was."""
        self._listener.stop()
        self._root.removeHandler(self._handler)
        self._root.setLevel(self._was[0])
        self._root.propagate = self._was[1]


class RequestLog:
    """Writes the one line per request, in the same JSON shape as every other log line.

    Lines are encoded on the request path (one orjson call) and handed, every 50 ms, as one block
    to a writer thread: no LogRecord per request, and the thread wakes twenty times a second,
    not once per request, so it hardly ever competes with the event loop.
    """

    __slots__ = ("_prompts", "_enabled", "_buf", "_scheduled", "_q", "_thread", "_out")

    FLUSH_SECONDS = 0.05

    def __init__(self, prompts: bool = False, stream: IO[bytes] | None = None) -> None:
        self._prompts = prompts
        self._enabled = logging.getLogger(REQUEST_LOGGER).isEnabledFor(logging.INFO)
        self._buf: list[bytes] = []
        self._scheduled = False
        self._out = stream
        self._q: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _write_loop(self) -> None:
        out = self._out or sys.stderr.buffer
        while True:
            block = self._q.get()
            if block is None:
                return
            try:
                out.write(block)
                out.flush()
            except (OSError, ValueError):  # the log sink went away: keep serving requests
                pass

    def _flush(self) -> None:
        self._scheduled = False
        if self._buf:
            block = b"".join(self._buf)
            self._buf.clear()
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_loop, name="bytespike-request-log", daemon=True)
                self._thread.start()
            self._q.put(block)

    def close(self) -> None:
        """Write what is buffered and stop the writer."""
        self._flush()
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def request(self, call: Call, status: int, billed: money.Usage | None, cost: int, latency: float) -> None:
        if not self._enabled:
            return
        now = time.time()
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
            "level": "info",
            "logger": REQUEST_LOGGER,
            "event": "request",
            "request_id": call.request_id,
            "key_id": call.key.id if call.key else None,
            "account_id": call.key.account_id if call.key else None,
            "protocol": call.protocol,
            "model": call.resolved.asked if call.resolved else None,
            "model_id": call.resolved.model.id if call.resolved else None,
            "provider": call.provider,
            "upstream_model": call.upstream_model,
            "attempts": call.attempts,
            "stream": call.stream,
            "status": status,
            "outcome": call.outcome.value if call.outcome else None,
            "error_type": call.error_type,
            "latency_ms": round(latency * 1000, 1),
            "ttft_ms": round((call.first_byte - call.started) * 1000, 1) if call.first_byte else None,
            "tokens": {
                "input": billed.input_tokens, "output": billed.output_tokens,
                "cache_read": billed.cache_read_tokens, "cache_write_5m": billed.cache_write_5m_tokens,
                "cache_write_1h": billed.cache_write_1h_tokens,
            } if billed else None,
            "cost_usd": money.format_usd(cost),
        }
        if self._prompts and call.req is not None:
            line["request"] = call.req
        self._buf.append(orjson.dumps(line, default=str) + b"\n")
        if not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self._flush)
            except RuntimeError:  # no loop (a direct call from a test or a tool): write at once
                self._flush()
