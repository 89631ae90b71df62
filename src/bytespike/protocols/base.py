"""The contracts every wire format fills: what a client speaks to us (``Inbound``) and the two
stream roles translation needs (``EventSource``: upstream bytes -> Anthropic events; ``Sink``:
Anthropic events -> client bytes). The road only ever talks to these; it never names a format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from bytespike.errors import GatewayError

Events = list[tuple[str, dict[str, Any]]]


class Relay(Protocol):
    """What the pipeline reads while relaying: usage so far (Anthropic split), whether the stream
    ended properly, and output size so far."""

    @property
    def usage(self) -> dict[str, Any]: ...
    @property
    def ok(self) -> bool: ...

    output_chars: int

    @property
    def keepalive(self) -> bytes | None:
        """What to send the client while the upstream is silent (None: the upstream sends its own)."""
        ...

    def feed(self, chunk: bytes) -> bytes: ...
    def end(self) -> bytes: ...
    def fail(self, err: GatewayError) -> bytes: ...


class EventSource(Protocol):
    """Upstream side of a translated stream: one SSE event (name, raw data) in, Anthropic events out."""

    @property
    def usage(self) -> dict[str, Any]: ...
    @property
    def completed(self) -> bool: ...
    @property
    def failed(self) -> bool: ...

    def feed_event(self, name: str, data: str) -> Events: ...
    def finish(self) -> Events: ...
    def fail(self, error_type: str, message: str) -> Events: ...


class Sink(Protocol):
    """Client side of a translated stream: Anthropic events in, client bytes out."""

    @property
    def keepalive(self) -> bytes:
        """A frame the client ignores, sent while the upstream is silent."""
        ...

    def events(self, events: Events) -> bytes: ...
    def finish(self) -> bytes: ...


class ModelView(Protocol):
    """What a model list shows of a catalogue model."""

    @property
    def id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def context_window(self) -> int | None: ...
    @property
    def owner(self) -> str: ...
    @property
    def description(self) -> str: ...


class Inbound(Protocol):
    """A protocol clients speak to the gateway, with its codec to and from the Messages hub."""

    name: str  # recorded on usage records and logs; the label in ``protocols_aggregate``
    wire: str  # an upstream type with the same wire serves it natively (body through unchanged)
    caveats: tuple[str, ...]  # what reaching a model through this protocol by translation loses
    routes: Mapping[str, str]  # path -> "infer" | "count_tokens" (POST), "models" | "model" (GET)
    key_param: str | None  # a query parameter that may carry the client's key (Gemini's ``?key=``)
    # Whether model lists also name other vendors' models under ``claude-via-<id>`` (for clients,
    # such as Claude Code's gateway model discovery, that keep only ``claude-`` ids).
    lists_discovery_ids: bool

    def claims(self, path: str, headers: Mapping[bytes, bytes]) -> int:
        """How surely a request belongs to this protocol: 2 by its path, 1 by a header only it
        sends, 0 not at all. Shared routes (models, usage, errors) answer in the surest one's shape."""
        ...

    def model_entry(self, model: ModelView) -> dict[str, Any]:
        """One model in this protocol's model-list shape (gateway extras are added after)."""
        ...

    def model_list(self, entries: list[dict[str, Any]]) -> dict[str, Any]: ...

    def parse(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        """The request as the road sees it: a dict with the ``model`` asked for (and ``stream``
        when streamed); a GatewayError (400) for anything the road cannot serve. ``params``: the
        query's parameters and the route's path parameters (which win). The body bytes themselves are what a native upstream gets."""
        ...

    def parse_count(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        """A token-count request as a Messages request (no ``max_tokens``), or a 400."""
        ...

    def max_tokens(self, req: dict[str, Any], model_max: int | None) -> int:
        """The output cap the request asks for when served natively."""
        ...

    def lower_max_tokens(self, req: dict[str, Any], n: int) -> None:
        """Admission can afford only ``n``: lower the native request in place."""
        ...

    def to_hub(self, req: dict[str, Any], model: str, model_max: int | None) -> dict[str, Any]:
        """The request as a Messages request, with the effective ``max_tokens`` decided here."""
        ...

    def passthrough(self, req: dict[str, Any], rename: str | None) -> Relay:
        """Relay for a same-wire upstream; ``rename``: the model name to put back, if the gateway changed it."""
        ...

    def native_whole(self, raw: bytes, rename: str | None) -> tuple[bytes, dict[str, Any]]:
        """A same-wire whole answer -> (client bytes, Anthropic-split usage)."""
        ...

    def sink(self, req: dict[str, Any], model: str) -> Sink: ...

    def from_message(self, message: dict[str, Any], model: str, req: Mapping[str, Any] | None = None) -> bytes:
        """A whole Messages answer -> the client's response body (``req``: the client's request)."""
        ...

    def count_answer(self, raw: bytes) -> bytes:
        """A token count as ``{"input_tokens": N}`` -> the client's counting response."""
        ...

    def error_body(self, err: GatewayError, request_id: str) -> bytes: ...
    def error_event(self, err: GatewayError) -> bytes: ...


class JsonEventSource:
    """Base for sources whose upstream sends one JSON object per SSE event (Chat, Gemini): parses
    it, notices the wire's error payloads and ``[DONE]``, and hands the rest to ``feed``."""

    failed: bool = False
    _done: bool = False

    def feed(self, chunk: dict[str, Any]) -> Events:
        raise NotImplementedError

    def fail(self, error_type: str, message: str) -> Events:
        raise NotImplementedError

    def error_message(self, payload: dict[str, Any]) -> str | None:
        """The message of an in-stream error payload, None when the payload is an ordinary chunk."""
        return None

    def feed_event(self, name: str, data: str) -> Events:
        if data == "[DONE]":
            self._done = True
            return []
        if not data:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(payload, dict):
            return []
        message = self.error_message(payload)
        if message is not None:
            self.failed = True
            return self.fail("api_error", message)
        return self.feed(payload)
