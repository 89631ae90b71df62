"""OpenAI's Responses API as a protocol clients speak (``POST /v1/responses``): Codex CLI and the
``openai`` SDK's ``client.responses``. Stateless: nothing is stored, so requests that would need a
stored response are refused with a 400 naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from bytespike.errors import GatewayError, bad_request
from bytespike.protocols.base import ModelView, Relay, Sink
from bytespike.protocols.json import load_answer, load_object
from bytespike.protocols.openai_responses.common import (
    INBOUND_CAVEATS,
    ResponsesRequestError,
    usage_from_responses,
)
from bytespike.protocols.openai_responses.inbound import (
    DEFAULT_MAX_TOKENS,
    custom_tool_names,
    reject_stateful,
    responses_to_messages_request,
)
from bytespike.protocols.openai_responses.output import MessagesToResponsesStream, message_to_response
from bytespike.protocols.openai_responses.relays import ResponsesPassthrough, ResponsesSink, rename_model
from bytespike.protocols.sse import frame

WIRE = "openai_responses"
_CREATED = 1735689600


class ResponsesInbound:
    name = "responses"
    wire = WIRE
    caveats: tuple[str, ...] = INBOUND_CAVEATS
    routes: Mapping[str, str] = MappingProxyType({"/v1/responses": "infer"})
    key_param: str | None = None
    lists_discovery_ids = False  # Claude Code's claude-via-<id> names are for Anthropic-shaped lists only

    def claims(self, path: str, headers: Mapping[bytes, bytes]) -> int:
        return 2 if path.startswith("/v1/responses") else 0

    def model_entry(self, model: ModelView) -> dict[str, Any]:
        return {"id": model.id, "object": "model", "created": _CREATED, "owned_by": model.owner}

    def model_list(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"object": "list", "data": entries}

    def parse(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        req = load_object(body)
        items = req.get("input")
        if not (isinstance(items, str) and items) and not (isinstance(items, list) and items):
            raise bad_request("input: field required (a string or a list of input items)", param="input")
        if "stream" in req and not isinstance(req["stream"], bool):
            raise bad_request("stream: must be a boolean", param="stream")
        value = req.get("max_output_tokens")
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise bad_request("max_output_tokens: must be a positive integer", param="max_output_tokens")
        try:
            reject_stateful(req)
        except ResponsesRequestError as exc:
            raise bad_request(exc.message, param=exc.param) from None
        return req

    def parse_count(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        req = self.parse(body, params)
        return self.to_hub(req, req["model"], None)

    def max_tokens(self, req: dict[str, Any], model_max: int | None) -> int:
        value = req.get("max_output_tokens")
        return int(value) if value is not None else (model_max or DEFAULT_MAX_TOKENS)

    def lower_max_tokens(self, req: dict[str, Any], n: int) -> None:
        req["max_output_tokens"] = n

    def to_hub(self, req: dict[str, Any], model: str, model_max: int | None) -> dict[str, Any]:
        try:
            return responses_to_messages_request(req, model, default_max_tokens=model_max or DEFAULT_MAX_TOKENS)
        except ResponsesRequestError as exc:
            raise bad_request(exc.message, param=exc.param) from None

    def passthrough(self, req: dict[str, Any], rename: str | None) -> Relay:
        return ResponsesPassthrough(rename)

    def native_whole(self, raw: bytes, rename: str | None) -> tuple[bytes, dict[str, Any]]:
        data = load_answer(raw)
        usage = usage_from_responses(data.get("usage"))
        if rename is not None and "model" in data:
            rename_model(data, rename)
            return orjson.dumps(data), usage
        return raw, usage

    def sink(self, req: dict[str, Any], model: str) -> Sink:
        return ResponsesSink(model, req, custom_tool_names(req))

    def from_message(self, message: dict[str, Any], model: str, req: Mapping[str, Any] | None = None) -> bytes:
        req = req or {}
        return orjson.dumps(message_to_response(message, model, req, custom_tool_names(req)))

    def count_answer(self, raw: bytes) -> bytes:
        return raw

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return err.openai_body()

    def error_event(self, err: GatewayError) -> bytes:
        event = MessagesToResponsesStream("").fail(err.message, err.type)[-1]
        return frame(event["type"], event)


INBOUND = ResponsesInbound()
