"""Gemini's API as a protocol clients speak (Gemini CLI, google-genai):
``POST /v1beta/models/{model}:generateContent``, ``:streamGenerateContent`` (``alt=sse`` or a JSON
array), ``:countTokens``, ``GET /v1beta/models``, and the same under ``/v1``."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import orjson

from bytespike.errors import GatewayError, bad_request
from bytespike.protocols.base import ModelView, Relay, Sink
from bytespike.protocols.gemini.inbound.common import CAVEATS, GeminiRequestError, error_object
from bytespike.protocols.gemini.inbound.relay import GeminiPassthrough, GeminiSink
from bytespike.protocols.gemini.inbound.request import gemini_to_messages_request, max_output_tokens
from bytespike.protocols.gemini.inbound.response import message_to_gemini_response
from bytespike.protocols.hub import mapping, usage_from_gemini
from bytespike.protocols.json import load_answer

WIRE: Final = "gemini_generate_content"
VIEW_KEYS: Final = ("model", "stream", "sse")
"""Keys the road's view of a request adds to the body (from the URL): none goes upstream."""
DEFAULT_MAX_TOKENS: Final = 8192
_METHODS: Final = ("generateContent", "streamGenerateContent")
_GENERATION: Final = ("generateContent", "streamGenerateContent", "countTokens")
_COUNTED: Final = ("model", "messages", "system", "tools", "tool_choice", "thinking", "output_config")


def _routes() -> Mapping[str, str]:
    out: dict[str, str] = {}
    for version in ("/v1beta", "/v1"):
        out[f"{version}/models/{{model}}:countTokens"] = "count_tokens"
        out[f"{version}/models/{{model}}:{{method}}"] = "infer"
    out["/v1beta/models"] = "models"
    out["/v1beta/models/{model_id:path}"] = "model"
    return MappingProxyType(out)


def body_of(req: Mapping[str, Any]) -> dict[str, Any]:
    """The GenerateContentRequest itself, without the road's view keys."""
    return {k: v for k, v in req.items() if k not in VIEW_KEYS}


def include_thoughts(req: Mapping[str, Any]) -> bool:
    config = mapping(mapping(req.get("generationConfig")).get("thinkingConfig"))
    return bool(config.get("includeThoughts", config.get("include_thoughts")))


class GeminiInbound:
    name = "gemini"
    wire = WIRE
    caveats: tuple[str, ...] = CAVEATS
    routes: Mapping[str, str] = _routes()
    key_param: str | None = "key"
    lists_discovery_ids = False

    def claims(self, path: str, headers: Mapping[bytes, bytes]) -> int:
        if path.startswith("/v1beta/") or path == "/v1beta" or (path.startswith("/v1/models/") and ":" in path):
            return 2
        return 1 if b"x-goog-api-key" in headers or b"x-goog-api-client" in headers else 0

    def model_entry(self, model: ModelView) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": f"models/{model.id}", "baseModelId": model.id, "version": "001",
                                 "displayName": model.display_name or model.id,
                                 "supportedGenerationMethods": list(_GENERATION)}
        if model.context_window:
            entry["inputTokenLimit"] = model.context_window
        if model.max_tokens:
            entry["outputTokenLimit"] = model.max_tokens
        return entry

    def model_list(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"models": entries}

    def parse(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        method = params.get("method")
        if method not in _METHODS:
            raise GatewayError("not_found_error", f"models.{method}: no such method; use generateContent, "
                                                  "streamGenerateContent or countTokens")
        req = _load(body)
        req["model"] = _model(params)
        req["stream"] = method == "streamGenerateContent"
        req["sse"] = params.get("alt") == "sse"
        return req

    def parse_count(self, body: bytes, params: Mapping[str, str]) -> dict[str, Any]:
        req = _load(body)
        inner = req.get("generateContentRequest", req.get("generate_content_request"))
        if isinstance(inner, dict):
            req = inner
        hub = self.to_hub({**req, "model": _model(params)}, _model(params), None)
        return {k: hub[k] for k in _COUNTED if k in hub}

    def max_tokens(self, req: dict[str, Any], model_max: int | None) -> int:
        try:
            asked = max_output_tokens(req)
        except GeminiRequestError as exc:
            raise bad_request(exc.message, param=exc.param) from None
        return asked or model_max or DEFAULT_MAX_TOKENS

    def lower_max_tokens(self, req: dict[str, Any], n: int) -> None:
        config = req.get("generationConfig")
        if not isinstance(config, dict):
            config = req["generationConfig"] = {}
        config.pop("max_output_tokens", None)
        config["maxOutputTokens"] = n

    def to_hub(self, req: dict[str, Any], model: str, model_max: int | None) -> dict[str, Any]:
        try:
            hub = gemini_to_messages_request(body_of(req), model, model_max or DEFAULT_MAX_TOKENS)
        except GeminiRequestError as exc:
            raise bad_request(exc.message, param=exc.param) from None
        if req.get("stream") is True:
            hub["stream"] = True
        return hub

    def passthrough(self, req: dict[str, Any], rename: str | None) -> Relay:
        return GeminiPassthrough(bool(req.get("sse")))

    def native_whole(self, raw: bytes, rename: str | None) -> tuple[bytes, dict[str, Any]]:
        data = load_answer(raw)
        return raw, usage_from_gemini(mapping(data.get("usageMetadata")))

    def sink(self, req: dict[str, Any], model: str) -> Sink:
        return GeminiSink(model, bool(req.get("sse")), include_thoughts(req))

    def from_message(self, message: dict[str, Any], model: str, req: Mapping[str, Any] | None = None) -> bytes:
        return orjson.dumps(message_to_gemini_response(message, model))

    def count_answer(self, raw: bytes) -> bytes:
        """``{"input_tokens": N}`` -> Gemini's ``{"totalTokens": N}``."""
        tokens = mapping(orjson.loads(raw)).get("input_tokens")
        return orjson.dumps({"totalTokens": tokens if isinstance(tokens, int) else 0})

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return orjson.dumps(error_object(err))

    def error_event(self, err: GatewayError) -> bytes:
        return b"data: " + orjson.dumps(error_object(err)) + b"\r\n\r\n"


def _load(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (Gemini's has no ``model``: it is in the URL)."""
    try:
        req = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc.args[0] if exc.args else exc}") from None
    if not isinstance(req, dict):
        raise bad_request("request body must be a JSON object")
    if "contents" in req and not isinstance(req["contents"], list):
        raise bad_request("contents: must be an array of Content objects", param="contents")
    return req


def _model(params: Mapping[str, str]) -> str:
    model = str(params.get("model") or "").removeprefix("models/")
    if not model:
        raise bad_request("model: the URL names no model", param="model")
    return model


INBOUND = GeminiInbound()
