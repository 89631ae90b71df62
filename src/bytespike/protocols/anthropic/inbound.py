"""Anthropic Messages as a protocol clients speak (``POST /v1/messages``): it is the hub itself, so
its request needs no translation and its answers are the hub's events."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from bytespike.errors import GatewayError, bad_request
from bytespike.protocols.anthropic.relay import AnthropicPassthrough, AnthropicSink
from bytespike.protocols.anthropic.shape import check_messages_shape
from bytespike.protocols.base import ModelView, Relay, Sink
from bytespike.protocols.hub import lower_max_tokens
from bytespike.protocols.json import load_answer, load_object

WIRE = "anthropic_messages"


def check_messages_request(req: dict[str, Any]) -> None:
    """The fields the road itself reads, checked before anything goes upstream."""
    msgs = req.get("messages")
    if not isinstance(msgs, list):
        raise bad_request("messages: field required (a list of messages)", param="messages")
    mt = req.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 0:
        raise bad_request("max_tokens: field required (a non-negative integer)", param="max_tokens")
    if "stream" in req and not isinstance(req["stream"], bool):
        raise bad_request("stream: must be a boolean", param="stream")
    check_messages_shape(req)


_CREATED = "2025-01-01T00:00:00Z"


class AnthropicInbound:
    name = "anthropic"
    wire = WIRE
    caveats: tuple[str, ...] = ()
    lists_discovery_ids = True
    routes: Mapping[str, str] = MappingProxyType({"/v1/messages": "infer", "/v1/messages/count_tokens": "count_tokens"})
    key_param: str | None = None

    def claims(self, path: str, headers: Mapping[bytes, bytes]) -> int:
        if path.startswith("/v1/messages"):
            return 2
        return 1 if b"anthropic-version" in headers or b"x-api-key" in headers else 0

    def model_entry(self, model: ModelView) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "model", "id": model.id, "display_name": model.display_name or model.id,
                                 "created_at": _CREATED, "description": model.description}
        if model.context_window:
            entry["max_input_tokens"] = model.context_window
        if model.max_tokens:
            entry["max_tokens"] = model.max_tokens
        return entry

    def model_list(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"data": entries, "has_more": False, "first_id": entries[0]["id"] if entries else None,
                "last_id": entries[-1]["id"] if entries else None}

    def parse(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        req = load_object(body)
        check_messages_request(req)
        return req

    def parse_count(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        req = load_object(body)
        if not isinstance(req.get("messages"), list):
            raise bad_request("messages: field required (a list of messages)", param="messages")
        return req

    def max_tokens(self, req: dict[str, Any], model_max: int | None) -> int:
        value: int = req["max_tokens"]
        return value

    def lower_max_tokens(self, req: dict[str, Any], n: int) -> None:
        lower_max_tokens(req, n)

    def to_hub(self, req: dict[str, Any], model: str, model_max: int | None) -> dict[str, Any]:
        return req

    def passthrough(self, req: dict[str, Any], rename: str | None) -> Relay:
        return AnthropicPassthrough(rename)

    def native_whole(self, raw: bytes, rename: str | None) -> tuple[bytes, dict[str, Any]]:
        message = load_answer(raw)
        usage = message.get("usage") or {}
        if rename is not None and "model" in message:
            message["model"] = rename
            return orjson.dumps(message), usage
        return raw, usage

    def sink(self, req: dict[str, Any], model: str) -> Sink:
        return AnthropicSink()

    def from_message(self, message: dict[str, Any], model: str, req: Mapping[str, Any] | None = None) -> bytes:
        return orjson.dumps(message)

    def count_answer(self, raw: bytes) -> bytes:
        return raw

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return err.anthropic_body(request_id)

    def error_event(self, err: GatewayError) -> bytes:
        return err.anthropic_event()


INBOUND = AnthropicInbound()
