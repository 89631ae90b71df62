"""Streams from upstream to client across two wire formats.

A relay takes upstream bytes and gives client bytes, and keeps what settlement needs: the usage
seen so far (always in Anthropic's split) and whether the stream ended properly. Native relays
(same wire both sides) live with their protocol; the translated relay here goes upstream wire ->
Anthropic events (an ``EventSource``) -> client wire (a ``Sink``), so the Messages shape is the
one hub every translation goes through.
"""

from __future__ import annotations

from typing import Any

from bytespike.errors import GatewayError
from bytespike.protocols.base import Events, EventSource, Relay, Sink
from bytespike.protocols.hub import delta_chars
from bytespike.protocols.sse import SSEParser

__all__ = ["Relay", "TranslatedRelay"]


class TranslatedRelay:
    """Upstream SSE -> (source) Anthropic events -> (sink) client bytes."""

    def __init__(self, source: EventSource, sink: Sink) -> None:
        self._parser = SSEParser()
        self._source = source
        self._sink = sink
        self.output_chars = 0
        self._failed = False

    @property
    def usage(self) -> dict[str, Any]:
        return self._source.usage

    @property
    def keepalive(self) -> bytes | None:
        """The sink's keepalive frame while the message is still open; nothing after its end."""
        return None if self._source.completed or self._failed else self._sink.keepalive

    @property
    def ok(self) -> bool:
        return self._source.completed and not self._failed and not self._source.failed

    def feed(self, chunk: bytes) -> bytes:
        out: Events = []
        for ev in self._parser.feed(chunk):
            out.extend(self._source.feed_event(ev.event, ev.data))
        if not out:
            return b""
        for name, data in out:
            if name == "content_block_delta":
                self.output_chars += delta_chars(data)
        return self._sink.events(out)

    def end(self) -> bytes:
        out: Events = []
        for ev in self._parser.close():
            out.extend(self._source.feed_event(ev.event, ev.data))
        if self._failed or self._source.failed:
            return self._sink.events(out)
        if not self._source.completed:
            out.extend(self._source.fail("api_error", "the upstream stream ended before the message was complete"))
            self._failed = True
            return self._sink.events(out)
        out.extend(self._source.finish())
        return self._sink.events(out) + self._sink.finish()

    def fail(self, err: GatewayError) -> bytes:
        self._failed = True
        return self._sink.events(self._source.fail(err.type, err.message))
