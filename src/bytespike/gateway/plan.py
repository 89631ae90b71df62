"""Pairs an inbound protocol with an upstream provider type.

Same protocol on both sides is a native route: the body goes up unchanged except ``model`` and
the answer comes back byte for byte. Otherwise the request is translated through the Messages
shape: OpenAI clients' requests become Messages requests first, and every upstream's answer
becomes Anthropic events before (for OpenAI clients) becoming chat chunks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from bytespike.billing import money
from bytespike.config import DeploymentConfig, ProviderConfig
from bytespike.errors import GatewayError, bad_request
from bytespike.gateway.catalogue import Resolved
from bytespike.gateway.relay import (
    AnthropicEvents,
    AnthropicPassthrough,
    AnthropicSink,
    ChatSink,
    OpenAIPassthrough,
    Relay,
    TranslatedRelay,
)
from bytespike.protocols.hub import usage_from_openai
from bytespike.providers import anthropic as anthropic_provider
from bytespike.providers import gemini as gemini_provider
from bytespike.providers import openai as openai_provider
from bytespike.providers.base import UpstreamRequest
from bytespike.state import State

DEFAULT_OPENAI_MAX_TOKENS = 4096
_GATEWAY_SIGNED = b"bytespike:1:"


def dialect(cls: type, provider: ProviderConfig, dep: DeploymentConfig, presets: Any = None) -> Any:
    """A translator dialect from provider and deployment ``options`` (deployment wins).

    ``dialect: NAME`` starts from a preset of the translator module (e.g. ``deepseek``,
    ``openai_gpt5``, ``gemini_3``); other keys naming a dialect field override it (lists become
    tuples); unknown keys are ignored.
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    opts = {**provider.options, **dep.options}
    base = cls()
    preset = opts.get("dialect")
    if isinstance(preset, str) and presets is not None:
        found = getattr(presets, preset.upper(), None)
        if isinstance(found, cls):
            base = found
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items() if k in fields}
    return dataclasses.replace(base, **changes) if changes else base


class Plan:
    """How to send one request upstream and bring the answer back, whichever deployment serves it."""

    def __init__(self, protocol: str, resolved: Resolved, req: dict[str, Any], body: bytes,
                 headers: dict[bytes, bytes], query: bytes, model_max_tokens: int | None) -> None:
        self.protocol = protocol
        self.resolved = resolved
        self.req = req
        self.body = body
        self.headers = headers
        self.query = query.decode("latin-1") if query else ""
        self._dirty = False
        self._names: dict[str, str] | None = None  # upstream tool name -> client's, when shortened
        self.input_estimate = money.estimate_input_tokens(len(body))
        if protocol == "anthropic":
            self.max_tokens: int = req["max_tokens"]
        else:
            mt = req.get("max_completion_tokens", req.get("max_tokens"))
            if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
                raise bad_request("max_completion_tokens: must be a positive integer", param="max_completion_tokens")
            self.max_tokens = mt if mt is not None else (model_max_tokens or DEFAULT_OPENAI_MAX_TOKENS)
        self.stream = req.get("stream") is True

    # -------------------------------------------------------- admission changes

    def lower_max_tokens(self, n: int) -> None:
        """Admission lowered max_tokens to what the wallet covers; keep any thinking budget below it."""
        self._dirty = True
        self.max_tokens = n
        if self.protocol == "anthropic":
            self.req["max_tokens"] = n
            thinking = self.req.get("thinking")
            if isinstance(thinking, dict) and thinking.get("type") == "enabled":
                budget = thinking.get("budget_tokens")
                if isinstance(budget, int) and budget >= n:
                    if n > 1024:
                        thinking["budget_tokens"] = max(1024, n - 1024) if n > 2048 else 1024
                        if thinking["budget_tokens"] >= n:
                            self.req.pop("thinking")
                    else:
                        self.req.pop("thinking")
        else:
            key = "max_completion_tokens" if "max_completion_tokens" in self.req else "max_tokens"
            self.req[key] = n

    # -------------------------------------------------------- upstream request

    def build(self, provider: ProviderConfig, dep: DeploymentConfig) -> UpstreamRequest:
        if self.protocol == "anthropic":
            return self._build_from_messages(self.req, provider, dep, native_body=True)
        if provider.type == "openai":
            req = self.req
            changed = self._dirty or req.get("model") != dep.model
            if self.stream and not (req.get("stream_options") or {}).get("include_usage"):
                req = {**req, "stream_options": {**(req.get("stream_options") or {}), "include_usage": True}}
                changed = True
            if changed:
                req = {**req, "model": dep.model}
                return openai_provider.request(provider, self.headers, orjson.dumps(req))
            return openai_provider.request(provider, self.headers, self.body)
        from bytespike.protocols.openai_chat.inbound import ChatRequestError, chat_to_messages_request

        try:
            mreq = chat_to_messages_request(self.req, dep.model)
        except ChatRequestError as exc:
            raise bad_request(str(exc.message), param=exc.param) from None
        mreq["max_tokens"] = self.max_tokens
        return self._build_from_messages(mreq, provider, dep, native_body=False)

    def _build_from_messages(self, req: dict[str, Any], provider: ProviderConfig, dep: DeploymentConfig,
                             native_body: bool) -> UpstreamRequest:
        if provider.type == "anthropic":
            path = "/v1/messages"
            if native_body and _GATEWAY_SIGNED in self.body:
                # Thinking this gateway signed for another vendor would be rejected by Anthropic.
                from bytespike.protocols.hub import drop_gateway_thinking

                cleaned = drop_gateway_thinking(req)
                if cleaned is not None:
                    req = cleaned
                    self._dirty = True
            if native_body and not self._dirty and req.get("model") == dep.model:
                body = self.body
            else:
                body = orjson.dumps({**req, "model": dep.model})
            query = self.query if native_body else ""
            return anthropic_provider.request(provider, path, query, self.headers if native_body else {}, body)
        if provider.type == "openai":
            from bytespike.protocols.openai_chat import upstream as openai_chat

            d = dialect(openai_chat.ChatDialect, provider, dep, openai_chat)
            chat = openai_chat.to_chat_request(req, dep.model, d)
            self._names = openai_chat.chat_tool_names(req, d) or None
            return openai_provider.request(provider, {}, orjson.dumps(chat))
        if provider.type == "gemini":
            from bytespike.protocols.gemini import upstream as gemini

            gd = dialect(gemini.GeminiDialect, provider, dep, gemini)
            g = gemini.to_gemini_request(req, gd)
            self._names = gemini.gemini_tool_names(req, gd) or None
            return gemini_provider.request(provider, dep.model, self.stream, orjson.dumps(g))
        raise GatewayError("api_error", f"unsupported provider type {provider.type!r}")

    # -------------------------------------------------------- answers

    def relay(self, provider: ProviderConfig, dep: DeploymentConfig) -> Relay:
        asked = self.resolved.asked
        if self.protocol == "anthropic":
            if provider.type == "anthropic":
                return AnthropicPassthrough(asked if asked != dep.model else None)
            return TranslatedRelay(self._source(provider, asked), AnthropicSink())
        include_usage = bool((self.req.get("stream_options") or {}).get("include_usage"))
        if provider.type == "openai":
            return OpenAIPassthrough(include_usage, asked if asked != dep.model else None)
        sink = ChatSink(asked, include_usage)
        if provider.type == "anthropic":
            return TranslatedRelay(AnthropicEvents(), sink, anthropic_upstream=True)
        return TranslatedRelay(self._source(provider, asked), sink)

    def _source(self, provider: ProviderConfig, model: str) -> Any:
        if provider.type == "openai":
            from bytespike.protocols.openai_chat.upstream import ChatStreamTranslator

            return ChatStreamTranslator(model, tool_names=self._names)
        from bytespike.protocols.gemini.upstream import GeminiStreamTranslator

        return GeminiStreamTranslator(model, tool_names=self._names, late_text_signatures=False)

    def convert(self, raw: bytes, provider: ProviderConfig, dep: DeploymentConfig) -> tuple[bytes, dict[str, Any]]:
        """A whole upstream answer -> (client bytes, Anthropic-split usage)."""
        asked = self.resolved.asked
        if self.protocol == "openai" and provider.type == "openai":
            data = _json(raw)
            usage = usage_from_openai(data.get("usage"))
            if asked != dep.model and "model" in data:
                data["model"] = asked
                return orjson.dumps(data), usage
            return raw, usage
        if provider.type == "anthropic":
            message = _json(raw)
            if self.protocol == "anthropic":
                usage = message.get("usage") or {}
                if asked != dep.model and "model" in message:
                    message["model"] = asked
                    return orjson.dumps(message), usage
                return raw, usage
        elif provider.type == "openai":
            from bytespike.protocols.openai_chat.upstream import from_chat_response

            message = from_chat_response(_json(raw), asked, tool_names=self._names)
        else:
            from bytespike.protocols.gemini.upstream import from_gemini_response

            message = from_gemini_response(_json(raw), asked, tool_names=self._names, late_text_signatures=False)
        usage = message.get("usage") or {}
        if self.protocol == "anthropic":
            return orjson.dumps(message), usage
        from bytespike.protocols.openai_chat.inbound import message_to_chat_completion

        return orjson.dumps(message_to_chat_completion(message, asked)), usage


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError("api_error", "the upstream provider sent an unreadable answer") from None
    if not isinstance(data, dict):
        raise GatewayError("api_error", "the upstream provider sent an unexpected answer")
    return data


def plan(state: State, protocol: str, resolved: Resolved, req: dict[str, Any], body: bytes,
         headers: dict[bytes, bytes], query: bytes) -> Plan:
    return Plan(protocol, resolved, req, body, headers, query, resolved.model.max_tokens)
