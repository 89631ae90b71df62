"""OpenAI Chat Completions as a protocol clients speak (``POST /v1/chat/completions``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from bytespike.errors import GatewayError, bad_request
from bytespike.protocols.base import ModelView, Relay, Sink
from bytespike.protocols.hub import usage_from_openai
from bytespike.protocols.json import load_answer, load_object
from bytespike.protocols.openai_chat.inbound.common import CAVEATS, ChatRequestError
from bytespike.protocols.openai_chat.inbound.request import DEFAULT_MAX_TOKENS, chat_to_messages_request
from bytespike.protocols.openai_chat.inbound.response import message_to_chat_completion
from bytespike.protocols.openai_chat.inbound.shape import check_chat_shape
from bytespike.protocols.openai_chat.relay import ChatSink, OpenAIPassthrough

WIRE = "openai_chat"
_CAP_FIELDS = ("max_completion_tokens", "max_tokens")


def include_usage(req: Mapping[str, Any]) -> bool:
    options = req.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


_CREATED = 1735689600


class ChatInbound:
    name = "openai"
    wire = WIRE
    caveats: tuple[str, ...] = tuple(CAVEATS)
    lists_discovery_ids = False
    routes: Mapping[str, str] = MappingProxyType({"/v1/chat/completions": "infer"})
    key_param: str | None = None

    def claims(self, path: str, headers: Mapping[bytes, bytes]) -> int:
        return 2 if path.startswith("/v1/chat") else 0

    def model_entry(self, model: ModelView) -> dict[str, Any]:
        return {"id": model.id, "object": "model", "created": _CREATED, "owned_by": model.owner}

    def model_list(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"object": "list", "data": entries}

    def parse(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        req = load_object(body)
        if not isinstance(req.get("messages"), list):
            raise bad_request("messages: field required (a list of messages)", param="messages")
        if "stream" in req and not isinstance(req["stream"], bool):
            raise bad_request("stream: must be a boolean", param="stream")
        options = req.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise bad_request("stream_options: must be an object", param="stream_options")
        for field in _CAP_FIELDS:
            value = req.get(field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise bad_request(f"{field}: must be a positive integer", param=field)
        check_chat_shape(req)
        return req

    def parse_count(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        req = self.parse(body, params)
        return self.to_hub(req, req["model"], None)

    def max_tokens(self, req: dict[str, Any], model_max: int | None) -> int:
        for field in _CAP_FIELDS:
            value = req.get(field)
            if value is not None:
                return int(value)
        return model_max or DEFAULT_MAX_TOKENS

    def lower_max_tokens(self, req: dict[str, Any], n: int) -> None:
        req["max_completion_tokens" if "max_completion_tokens" in req else "max_tokens"] = n

    def to_hub(self, req: dict[str, Any], model: str, model_max: int | None) -> dict[str, Any]:
        try:
            return chat_to_messages_request(req, model, default_max_tokens=model_max or DEFAULT_MAX_TOKENS)
        except ChatRequestError as exc:
            raise bad_request(str(exc.message), param=exc.param) from None

    def passthrough(self, req: dict[str, Any], rename: str | None) -> Relay:
        return OpenAIPassthrough(include_usage(req), rename)

    def native_whole(self, raw: bytes, rename: str | None) -> tuple[bytes, dict[str, Any]]:
        data = load_answer(raw)
        usage = usage_from_openai(data.get("usage"))
        if rename is not None and "model" in data:
            data["model"] = rename
            return orjson.dumps(data), usage
        return raw, usage

    def sink(self, req: dict[str, Any], model: str) -> Sink:
        return ChatSink(model, include_usage(req))

    def from_message(self, message: dict[str, Any], model: str, req: Mapping[str, Any] | None = None) -> bytes:
        return orjson.dumps(message_to_chat_completion(message, model))

    def count_answer(self, raw: bytes) -> bytes:
        return raw

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return err.openai_body()

    def error_event(self, err: GatewayError) -> bytes:
        return err.openai_event()


INBOUND = ChatInbound()
