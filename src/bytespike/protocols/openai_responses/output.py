"""Anthropic Messages events -> OpenAI Responses stream events and objects, for Responses clients.

A small state machine: each Messages content block becomes one output item (text -> message,
thinking -> reasoning with a summary, tool_use -> function_call or custom_tool_call), opened,
filled and closed in order; every event carries an increasing ``sequence_number``, and the
stream ends in ``response.completed``, ``response.incomplete`` or ``response.failed``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from random import getrandbits
from typing import Any

import orjson

from bytespike.protocols.hub import mapping, string
from bytespike.protocols.openai_responses.common import pack_thinking, responses_usage
from bytespike.protocols.openai_responses.inbound import CUSTOM_ARG

Event = dict[str, Any]

_ERROR_CODES = {
    "rate_limit_error": "rate_limit_exceeded",
    "overloaded_error": "server_error",
    "api_error": "server_error",
    "timeout_error": "server_error",
    "invalid_request_error": "invalid_prompt",
    "billing_error": "insufficient_quota",
}


def _id(prefix: str) -> str:
    return f"{prefix}_{getrandbits(96):024x}"


class MessagesToResponsesStream:
    """Feed Anthropic stream events one at a time, get Responses stream events (dicts with ``type``)."""

    def __init__(self, model: str, request: Mapping[str, Any] | None = None,
                 custom_tools: Iterable[str] = (), created_at: int | None = None) -> None:
        self.model = model
        self._request = request or {}
        self._custom = frozenset(custom_tools)
        self.response_id = _id("resp")
        self.created_at = created_at if created_at is not None else int(time.time())
        self._seq = 0
        self._output: list[dict[str, Any]] = []
        self._item: dict[str, Any] | None = None  # the open output item
        self._kind: str | None = None  # Messages block type of the open item
        self._buffer: list[str] = []
        self._block: dict[str, Any] = {}  # the open thinking block as the client will get it back
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self.started = False
        self.ended = False
        self.status = "in_progress"

    # --- feeding -----------------------------------------------------------------------------

    def feed(self, name: str, data: Mapping[str, Any]) -> list[Event]:
        if self.ended:
            return []
        kind = name or string(data.get("type"))
        out = self._ensure_started() if kind != "error" else []
        if kind == "message_start":
            self._merge_usage(mapping(data.get("message")).get("usage"))
        elif kind == "content_block_start":
            out += self._close()
            out += self._open(mapping(data.get("content_block")))
        elif kind == "content_block_delta":
            out += self._delta(mapping(data.get("delta")))
        elif kind == "content_block_stop":
            out += self._close()
        elif kind == "message_delta":
            self._merge_usage(data.get("usage"))
            reason = mapping(data.get("delta")).get("stop_reason")
            if isinstance(reason, str):
                self._stop_reason = reason
        elif kind == "message_stop":
            out += self._close()
            out += self._terminal()
        elif kind == "error":
            err = mapping(data.get("error"))
            out += self.fail(string(err.get("message")) or "upstream error", string(err.get("type")) or "api_error")
        return out

    def fail(self, message: str, error_type: str = "api_error") -> list[Event]:
        """``response.failed`` with the error; nothing follows it."""
        if self.ended:
            return []
        out = self._ensure_started()
        self.ended = True
        self.status = "failed"
        response = self.response()
        response["error"] = {"code": _ERROR_CODES.get(error_type, "server_error"), "message": message}
        out.append(self._event("response.failed", response=response))
        return out

    def response(self) -> dict[str, Any]:
        """The Response object as far as the stream got."""
        incomplete = None
        if self.status == "incomplete":
            incomplete = {"reason": "content_filter" if self._stop_reason == "refusal" else "max_output_tokens"}
        req = self._request
        tools = req.get("tools") if isinstance(req.get("tools"), list) else []
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": False,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": req.get("instructions") if isinstance(req.get("instructions"), str) else None,
            "max_output_tokens": req.get("max_output_tokens"),
            "model": self.model,
            "output": [dict(item) for item in self._output],
            "parallel_tool_calls": req.get("parallel_tool_calls") is not False,
            "previous_response_id": None,
            "reasoning": req.get("reasoning") if isinstance(req.get("reasoning"), dict) else None,
            "store": False,
            "temperature": req.get("temperature", 1.0),
            "text": req.get("text") if isinstance(req.get("text"), dict) else {"format": {"type": "text"}},
            "tool_choice": req.get("tool_choice", "auto"),
            "tools": tools,
            "top_p": req.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": responses_usage(self._usage) if self.status != "in_progress" else None,
            "metadata": req.get("metadata") if isinstance(req.get("metadata"), dict) else {},
        }

    # --- internals ---------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return event

    def _ensure_started(self) -> list[Event]:
        if self.started:
            return []
        self.started = True
        return [self._event("response.created", response=self.response()),
                self._event("response.in_progress", response=self.response())]

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, Mapping):
            for k, v in usage.items():
                if v is not None:
                    self._usage[k] = v

    def _index(self) -> int:
        return len(self._output)

    def _open(self, block: Mapping[str, Any]) -> list[Event]:
        kind = block.get("type")
        item: dict[str, Any]
        if kind == "text":
            item = {"id": _id("msg"), "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
            self._item, self._kind, self._buffer = item, "text", [string(block.get("text"))]
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            return [self._event("response.output_item.added", output_index=self._index(), item=dict(item)),
                    self._event("response.content_part.added", item_id=item["id"], output_index=self._index(),
                                content_index=0, part=part)]
        if kind in ("thinking", "redacted_thinking"):
            item = {"id": _id("rs"), "type": "reasoning", "summary": []}
            self._item, self._kind = item, str(kind)
            self._buffer = [string(block.get("thinking"))]
            self._block = dict(block)
            return [self._event("response.output_item.added", output_index=self._index(), item=dict(item))]
        if kind == "tool_use":
            name = string(block.get("name"))
            custom = name in self._custom
            item = {"id": _id("ctc" if custom else "fc"), "type": "custom_tool_call" if custom else "function_call",
                    "status": "in_progress", "call_id": string(block.get("id")), "name": name}
            item["input" if custom else "arguments"] = ""
            self._item, self._kind = item, "custom" if custom else "tool_use"
            start_input = block.get("input")
            self._buffer = [orjson.dumps(start_input).decode()] if start_input else []
            return [self._event("response.output_item.added", output_index=self._index(), item=dict(item))]
        self._item, self._kind = None, None  # server tools and other blocks have no Responses item
        return []

    def _delta(self, delta: Mapping[str, Any]) -> list[Event]:
        item, kind = self._item, delta.get("type")
        if item is None:
            return []
        if kind == "text_delta" and self._kind == "text":
            text = string(delta.get("text"))
            self._buffer.append(text)
            return [self._event("response.output_text.delta", item_id=item["id"], output_index=self._index(),
                                content_index=0, delta=text, logprobs=[])] if text else []
        if kind == "thinking_delta" and self._kind == "thinking":
            text = string(delta.get("thinking"))
            out: list[Event] = []
            if not text:
                return out
            if not any(self._buffer):
                out.append(self._event("response.reasoning_summary_part.added", item_id=item["id"],
                                       output_index=self._index(), summary_index=0,
                                       part={"type": "summary_text", "text": ""}))
            self._buffer.append(text)
            out.append(self._event("response.reasoning_summary_text.delta", item_id=item["id"],
                                   output_index=self._index(), summary_index=0, delta=text))
            return out
        if kind == "signature_delta" and self._kind == "thinking":
            self._block["signature"] = string(self._block.get("signature")) + string(delta.get("signature"))
            return []
        if kind == "input_json_delta" and self._kind in ("tool_use", "custom"):
            fragment = string(delta.get("partial_json"))
            if self._buffer == ["{}"]:
                self._buffer = []
            self._buffer.append(fragment)
            if self._kind == "tool_use" and fragment:
                return [self._event("response.function_call_arguments.delta", item_id=item["id"],
                                    output_index=self._index(), delta=fragment)]
        return []

    def _close(self) -> list[Event]:
        item, kind = self._item, self._kind
        if item is None:
            return []
        self._item, self._kind = None, None
        index = self._index()
        text = "".join(self._buffer)
        out: list[Event] = []
        if kind == "text":
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            item.update(status="completed", content=[part])
            out += [self._event("response.output_text.done", item_id=item["id"], output_index=index,
                                content_index=0, text=text, logprobs=[]),
                    self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                content_index=0, part=part)]
        elif kind in ("thinking", "redacted_thinking"):
            block = {**self._block, "thinking": text} if kind == "thinking" else self._block
            if text:
                part = {"type": "summary_text", "text": text}
                item["summary"] = [part]
                out += [self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                                    summary_index=0, text=text),
                        self._event("response.reasoning_summary_part.done", item_id=item["id"],
                                    output_index=index, summary_index=0, part=part)]
            item["encrypted_content"] = pack_thinking(block)
        elif kind == "tool_use":
            args = text or "{}"
            item.update(status="completed", arguments=args)
            out.append(self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                   name=item["name"], arguments=args))
        elif kind == "custom":
            try:
                parsed = orjson.loads(text) if text else {}
            except orjson.JSONDecodeError:
                parsed = {}
            value = parsed.get(CUSTOM_ARG) if isinstance(parsed, dict) else None
            raw = value if isinstance(value, str) else text
            item.update(status="completed", input=raw)
            if raw:
                out.append(self._event("response.custom_tool_call_input.delta", item_id=item["id"],
                                       output_index=index, delta=raw))
            out.append(self._event("response.custom_tool_call_input.done", item_id=item["id"],
                                   output_index=index, input=raw))
        self._output.append(item)
        out.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        return out

    def _terminal(self) -> list[Event]:
        self.ended = True
        if self._stop_reason in ("max_tokens", "model_context_window_exceeded", "refusal"):
            self.status = "incomplete"
            return [self._event("response.incomplete", response=self.response())]
        self.status = "completed"
        return [self._event("response.completed", response=self.response())]


def message_events(message: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A whole Anthropic Message as the stream events that would have carried it."""
    usage = mapping(message.get("usage"))
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {**message, "content": [], "usage": dict(usage)}})]
    for i, block in enumerate(message.get("content") or ()):
        block = mapping(block)
        kind = block.get("type")
        start = dict(block)
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            start["text"] = ""
            deltas.append({"type": "text_delta", "text": string(block.get("text"))})
        elif kind == "thinking":
            start.update(thinking="", signature="")
            deltas += [{"type": "thinking_delta", "thinking": string(block.get("thinking"))},
                       {"type": "signature_delta", "signature": string(block.get("signature"))}]
        elif kind == "tool_use":
            start["input"] = {}
            deltas.append({"type": "input_json_delta", "partial_json": orjson.dumps(block.get("input") or {}).decode()})
        events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": message.get("stop_reason")},
                                     "usage": dict(usage)}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def message_to_response(message: Mapping[str, Any], model: str, request: Mapping[str, Any] | None = None,
                        custom_tools: Iterable[str] = ()) -> dict[str, Any]:
    """A whole Anthropic Message -> a Responses object, through the same state machine as streams."""
    stream = MessagesToResponsesStream(model, request, custom_tools)
    for name, data in message_events(message):
        stream.feed(name, data)
    return stream.response()
