"""OpenAI Responses answers (stream events or a whole response) -> Anthropic Messages events.

A reasoning item becomes a thinking block: its summary is the thinking text and its signature
carries the item itself, so it can go back upstream unchanged. A reasoning item with neither
summary nor encrypted content opens nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bytespike.protocols.anthropic.builder import MessageStreamBuilder
from bytespike.protocols.base import JsonEventSource
from bytespike.protocols.hub import (
    SIG_REASONING,
    Events,
    empty_usage,
    gateway_signature,
    mapping,
    new_message_id,
    sanitize_id,
    string,
)
from bytespike.protocols.openai_responses.common import reasoning_signature, usage_from_responses

_ERROR_TYPES = {
    "rate_limit_exceeded": "rate_limit_error",
    "server_error": "api_error",
    "invalid_prompt": "invalid_request_error",
    "insufficient_quota": "billing_error",
}


class ResponsesStreamTranslator(JsonEventSource):
    """Responses stream events -> Anthropic stream events, one parsed ``data:`` payload at a time.

    The message ends on ``response.completed`` / ``response.incomplete`` (message_delta +
    message_stop) or ``response.failed`` / ``error`` (an ``error`` event).
    """

    def __init__(self, model: str, message_id: str | None = None,
                 tool_names: Mapping[str, str] | None = None) -> None:
        self.model = model
        self._message_id = message_id
        self._names = dict(tool_names or {})
        self._builder: MessageStreamBuilder | None = None
        self._calls: dict[str, dict[str, Any]] = {}  # item id -> {"args_sent": bool}
        self._open_item: str | None = None
        self._summary_index: int | None = None
        self._refused = False
        self.completed = False
        self.failed = False
        self.usage: dict[str, Any] = empty_usage()

    def feed(self, event: dict[str, Any]) -> Events:
        builder, out = self._start(event)
        if builder.ended:
            return out
        kind = string(event.get("type"))
        if kind == "response.output_item.added":
            out += self._item_added(builder, mapping(event.get("item")))
        elif kind == "response.output_text.delta":
            out += builder.text(string(event.get("delta")))
        elif kind == "response.refusal.delta":
            self._refused = True
            out += builder.text(string(event.get("delta")))
        elif kind == "response.reasoning_summary_text.delta":
            index = event.get("summary_index")
            if self._summary_index is not None and index != self._summary_index and builder.open_block == "thinking":
                out += builder.thinking("\n\n")
            self._summary_index = index if isinstance(index, int) else 0
            out += builder.thinking(string(event.get("delta")))
        elif kind == "response.function_call_arguments.delta":
            item_id = string(event.get("item_id"))
            if item_id == self._open_item and item_id in self._calls and builder.open_block == "tool_use":
                delta = string(event.get("delta"))
                if delta:
                    self._calls[item_id]["args_sent"] = True
                out += builder.tool_input(delta)
        elif kind == "response.function_call_arguments.done":
            item_id = string(event.get("item_id"))
            out += self._late_arguments(builder, item_id, event.get("arguments"))
        elif kind == "response.output_item.done":
            out += self._item_done(builder, mapping(event.get("item")))
        elif kind in ("response.completed", "response.incomplete"):
            out += self._end(builder, mapping(event.get("response")))
        elif kind == "response.failed":
            error = mapping(mapping(event.get("response")).get("error"))
            out += self._fail(builder, error)
        elif kind == "error":
            out += self._fail(builder, mapping(event.get("error")) or event)
        return out

    def finish(self) -> Events:
        """The upstream ended. A stream without a terminal event is left to the relay to fail."""
        return []

    def fail(self, error_type: str, message: str) -> Events:
        self.failed = True
        builder, out = self._start({})
        return out + builder.error(error_type, message)

    def message(self) -> dict[str, Any]:
        builder, _ = self._start({})
        return builder.message()

    # --- internals ---------------------------------------------------------------------------

    def _start(self, event: Mapping[str, Any]) -> tuple[MessageStreamBuilder, Events]:
        if self._builder is None:
            seed = mapping(event.get("response")).get("id")
            self._builder = MessageStreamBuilder(self.model, self._message_id or new_message_id(seed),
                                                 gateway_signature(SIG_REASONING))
            return self._builder, self._builder.start()
        return self._builder, []

    def _item_added(self, builder: MessageStreamBuilder, item: Mapping[str, Any]) -> Events:
        kind = item.get("type")
        item_id = string(item.get("id"))
        if kind == "function_call":
            name = string(item.get("name"))
            fallback = f"toolu_{builder.message_id.removeprefix('msg_')}_{len(self._calls)}"
            call_id = sanitize_id(item.get("call_id") or item_id, fallback)
            args = string(item.get("arguments"))
            self._calls[item_id] = {"args_sent": bool(args)}
            self._open_item = item_id
            return builder.tool_use(call_id, self._names.get(name, name), args)
        self._open_item = item_id
        if kind == "reasoning":
            self._summary_index = None
        return []

    def _late_arguments(self, builder: MessageStreamBuilder, item_id: str, arguments: Any) -> Events:
        """Arguments given whole at the end (no deltas) still reach the client as one delta."""
        call = self._calls.get(item_id)
        if call is None or call["args_sent"] or item_id != self._open_item:
            return []
        call["args_sent"] = True
        return builder.tool_input(arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode())

    def _item_done(self, builder: MessageStreamBuilder, item: Mapping[str, Any]) -> Events:
        kind = item.get("type")
        item_id = string(item.get("id"))
        out: Events = []
        if kind == "reasoning":
            if item.get("encrypted_content"):
                out += builder.signature(reasoning_signature(item))
            elif builder.open_block == "thinking":
                out += builder.close()
        elif kind == "function_call":
            out += self._late_arguments(builder, item_id, item.get("arguments"))
            if item_id == self._open_item:
                out += builder.close()
        elif kind == "message":
            if item_id == self._open_item and builder.open_block == "text":
                out += builder.close()
        self._open_item = None
        return out

    def _end(self, builder: MessageStreamBuilder, response: Mapping[str, Any]) -> Events:
        self.usage = usage_from_responses(response.get("usage"))
        self.completed = True
        reason = "end_turn"
        if response.get("status") == "incomplete":
            why = mapping(response.get("incomplete_details")).get("reason")
            reason = "refusal" if why == "content_filter" else "max_tokens"
        elif self._refused:
            reason = "refusal"
        return builder.finish(reason, self.usage)

    def _fail(self, builder: MessageStreamBuilder, error: Mapping[str, Any]) -> Events:
        self.failed = True
        code = string(error.get("code")) or string(error.get("type"))
        message = string(error.get("message")) or "the upstream provider failed"
        return builder.error(_ERROR_TYPES.get(code, "api_error"), message)


def from_responses_response(resp: Mapping[str, Any], model: str,
                            tool_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A whole Responses object -> Anthropic Message, through the same translator as streams."""
    t = ResponsesStreamTranslator(model, new_message_id(resp.get("id")), tool_names)
    t.feed({"type": "response.created", "response": resp})
    for item in resp.get("output") or ():
        if not isinstance(item, Mapping):
            continue
        t.feed({"type": "response.output_item.added", "item": {**item, "arguments": ""}})
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                part = mapping(part)
                if part.get("type") == "output_text":
                    t.feed({"type": "response.output_text.delta", "item_id": item.get("id"), "delta": part.get("text")})
                elif part.get("type") == "refusal":
                    t.feed({"type": "response.refusal.delta", "item_id": item.get("id"),
                            "delta": part.get("refusal")})
        elif kind == "reasoning":
            for i, part in enumerate(item.get("summary") or ()):
                t.feed({"type": "response.reasoning_summary_text.delta", "item_id": item.get("id"),
                        "summary_index": i, "delta": mapping(part).get("text")})
        t.feed({"type": "response.output_item.done", "item": item})
    status = resp.get("status")
    if status == "failed":
        t.feed({"type": "response.failed", "response": resp})
    else:
        t.feed({"type": "response.completed" if status != "incomplete" else "response.incomplete",
                "response": resp})
    return t.message()
