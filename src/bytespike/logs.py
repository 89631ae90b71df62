"""Structured logs: every ``bytespike`` log record as one JSON line, and one line per request.

A request line carries ids, model, provider, status, timings, tokens and cost. It never carries
credentials (only the key's id) and carries the request body only when the operator turns on
``logging: {prompts: true}``. Lines are written by a background thread so a slow log sink never
stalls the event loop.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import time
from typing import IO, TYPE_CHECKING, Any

import orjson

from . import money

if TYPE_CHECKING:
    from .pipeline import Call

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
    """Writes the one line per request."""

    __slots__ = ("_log", "_prompts")

    def __init__(self, prompts: bool = False) -> None:
        self._log = logging.getLogger(REQUEST_LOGGER)
        self._prompts = prompts

    def request(self, call: Call, status: int, billed: money.Usage | None, cost: int, latency: float) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
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
            fields["request"] = call.req
        self._log.info("request", extra={"fields": fields})
