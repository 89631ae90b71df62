"""Messages SSE events -> ``chat.completion.chunk`` objects, one upstream event at a time."""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from bytespike.protocols.openai_chat.inbound.response import (
    _USAGE_KEYS,
    _completion_id,
    _merge_usage,
    _thinking_tokens,
    chat_usage,
    finish_reason,
)

DONE: Final = b"data: [DONE]\n\n"
_DELTA_FIELD: Final = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


class MessagesToChatStream:
    """Feed Anthropic stream events one at a time, get Chat chunks.

    Tool calls are numbered 0, 1, 2... in the order their tool_use blocks start, whatever text or
    thinking blocks come between. Unknown events, blocks and deltas are ignored.
    """

    def __init__(
        self, model: str, include_usage: bool, completion_id: str | None = None, created: int | None = None
    ) -> None:
        self.model = model
        self.include_usage = include_usage
        self.completion_id = completion_id
        self.created = created if created is not None else int(time.time())
        self.usage: dict[str, int] = dict.fromkeys(_USAGE_KEYS, 0)
        self._reasoning_tokens: int | None = None
        self._started = False
        self._finished = False
        self._done = False
        self._tools: dict[int, int] = {}  # Messages block index -> Chat tool call index
        self._args_sent: dict[int, bool] = {}  # Chat tool call index -> any argument text sent
        self._start_input: dict[int, Any] = {}  # Chat tool call index -> input given in the start event
        self._open_tools: set[int] = set()
        self._stop_reason: str | None = None

    def feed(self, event: str, data: dict) -> list[dict]:
        """One Messages SSE event -> zero or more chunks; an ``error`` event gives the ``fail`` payload."""
        kind = event or (data.get("type") if isinstance(data, dict) else "") or ""
        if not isinstance(data, dict) or self._done:
            return []
        if kind == "message_start":
            message = data.get("message")
            if isinstance(message, dict):
                _merge_usage(self.usage, message.get("usage"))
                if self.completion_id is None and not self._started:
                    self.completion_id = _completion_id(message.get("id"))
            return self._ensure_started()
        if kind == "content_block_start":
            return self._block_start(data.get("index"), data.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(data.get("index"), data.get("delta"))
        if kind == "content_block_stop":
            index = data.get("index")
            return self._close_tool(self._tools.get(index) if isinstance(index, int) else None)
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            return self._finish_chunk()
        if kind == "error":
            err = data.get("error")
            err = err if isinstance(err, dict) else {}
            return [
                self.fail(str(err.get("message") or "upstream error"), str(err.get("type") or "api_error"))
            ]
        return []

    def finish(self) -> list[dict]:
        """After message_stop: the finish chunk if none went out, then the usage chunk when asked for.

        A stream cut short (no message_stop) should end with ``fail`` instead.
        """
        if self._done:
            return []
        out = self._finish_chunk()
        self._done = True
        if self.include_usage:
            out.append(self._chunk(None, usage=chat_usage(self.usage, self._reasoning_tokens)))
        return out

    def fail(self, message: str, type_: str = "api_error", code: str | None = None) -> dict:
        """The final ``data:`` payload of a stream broken after its first byte (OpenAI error shape)."""
        self._done = True
        return {"error": {"message": message, "type": type_, "param": None, "code": code}}

    # -- internals -------------------------------------------------------------------------------

    def _chunk(self, delta: dict | None, finish: str | None = None, usage: dict | None = None) -> dict:
        if self.completion_id is None:
            self.completion_id = _completion_id(None)
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            chunk["usage"] = usage
        return chunk

    def _ensure_started(self) -> list[dict]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: object, block: object) -> list[dict]:
        if not isinstance(block, dict) or not isinstance(index, int) or self._finished:
            return []
        out = self._ensure_started()
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif kind == "thinking" and block.get("thinking"):
            out.append(self._chunk({"reasoning_content": block["thinking"]}))
        elif kind == "tool_use":
            k = len(self._tools)
            self._tools[index] = k
            self._args_sent[k] = False
            self._start_input[k] = block.get("input")
            self._open_tools.add(k)
            call = {
                "index": k,
                "id": str(block.get("id") or f"call_{k}"),
                "type": "function",
                "function": {"name": str(block.get("name") or ""), "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [call]}))
        return out

    def _block_delta(self, index: object, delta: object) -> list[dict]:
        if not isinstance(delta, dict) or self._finished:
            return []
        kind = delta.get("type")
        field = _DELTA_FIELD.get(kind) if isinstance(kind, str) else None
        piece = delta.get(field) if field else None
        if not isinstance(piece, str) or not piece:
            return []
        if kind == "text_delta":
            chunk_delta: dict[str, Any] = {"content": piece}
        elif kind == "thinking_delta":
            chunk_delta = {"reasoning_content": piece}
        elif isinstance(index, int) and index in self._tools:
            k = self._tools[index]
            self._args_sent[k] = True
            chunk_delta = {"tool_calls": [{"index": k, "function": {"arguments": piece}}]}
        else:  # arguments of a server tool: not the client's to run
            return []
        return [*self._ensure_started(), self._chunk(chunk_delta)]

    def _close_tool(self, k: int | None) -> list[dict]:
        """A tool whose arguments never streamed gets its start input, or ``{}`` (Messages' no-argument call)."""
        if k is None or k not in self._open_tools:
            return []
        self._open_tools.discard(k)
        if self._args_sent[k]:
            return []
        start = self._start_input.get(k)
        arguments = orjson.dumps(start if isinstance(start, dict) else {}).decode()
        return [self._chunk({"tool_calls": [{"index": k, "function": {"arguments": arguments}}]})]

    def _message_delta(self, data: dict) -> list[dict]:
        _merge_usage(self.usage, data.get("usage"))
        tokens = _thinking_tokens(data.get("usage"))
        if tokens is not None:
            self._reasoning_tokens = tokens
        delta = data.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if isinstance(reason, str) and self._stop_reason is None:
            self._stop_reason = reason
        return self._finish_chunk() if reason else []

    def _finish_chunk(self) -> list[dict]:
        if self._finished or self._done:
            return []
        out = self._ensure_started()
        for k in sorted(self._open_tools):  # a call cut short by max_tokens keeps its partial arguments
            out.extend(self._close_tool(k))
        self._finished = True
        out.append(self._chunk({}, finish_reason(self._stop_reason, bool(self._tools))))
        return out
