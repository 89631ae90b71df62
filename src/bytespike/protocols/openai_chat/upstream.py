"""Anthropic Messages <-> OpenAI Chat Completions, for Messages clients reaching Chat upstreams.

Upstream differences (OpenAI, DeepSeek, OpenRouter, other compatible servers) are data in a
``ChatDialect``; the functions here never test a provider's name.

Reasoning round trip: reasoning text (``reasoning_content`` / ``reasoning``) comes back as a
``thinking`` block signed ``bytespike:1:reasoning:``. When the dialect names a reasoning field
(DeepSeek thinking mode with tools requires it), the text of such blocks, or of unsigned ones,
goes back on the assistant message; blocks with any other signature (Anthropic's own, Gemini's)
are dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from bytespike.protocols.anthropic.builder import MessageStreamBuilder
from bytespike.protocols.base import JsonEventSource
from bytespike.protocols.hub import (
    SIG_REASONING,
    Events,
    blocks_of,
    empty_usage,
    gateway_signature,
    mapping,
    new_message_id,
    openai_reasoning_family,
    read_gateway_signature,
    requested_effort,
    sanitize_id,
    snap_effort,
    stop_from_openai,
    system_texts,
    tool_name_map,
    upstream_tool_name,
    usage_from_openai,
)

CAVEATS: Final[tuple[str, ...]] = (
    "top_k is dropped (Chat Completions has no top_k) unless the upstream accepts it.",
    "Which stop sequence matched is not reported: stop_reason is end_turn and stop_sequence null.",
    "At most 4 stop_sequences are sent; the rest are dropped.",
    "Images and documents inside tool_result go in a user message right after the tool messages "
    "(tool messages carry text only); the tool message says where they went.",
    "tool_result is_error has no slot: the tool message text is prefixed with 'Error: '.",
    "Thinking blocks signed by Anthropic or another vendor are dropped; redacted_thinking is dropped.",
    "thinking budget and output_config.effort map to reasoning_effort levels; OpenAI returns no "
    "reasoning text, so no thinking blocks come back from it.",
    "cache_control is dropped unless the upstream honours it; OpenAI and DeepSeek cache automatically.",
    "Server tools (web search, code execution, ...) and their result blocks are dropped.",
    "Document URLs (PDF by link) cannot be attached: the link is sent as text.",
    "Text-only upstreams (DeepSeek) get a short note in place of each image or PDF.",
    "metadata.user_id is sent as user (hashed when longer than 64 characters).",
    "The x-anthropic-billing-header attribution line Claude Code puts first in the system prompt is "
    "not sent (it would defeat prompt caching).",
    "Tool names longer than 64 characters are shortened upstream and restored in the response.",
    "An assistant message last in the request (prefill) is sent as an ordinary assistant message.",
    "DeepSeek: thinking is turned off when tool_choice forces a tool (thinking mode allows auto/none only).",
    "Reasoning text is returned even when thinking.display is 'omitted'.",
    "OpenAI reasoning models (gpt-5*, o1, o3, o4*) get max_completion_tokens and only the default temperature "
    "and top_p (o-series: no stop); what they refuse is dropped and listed in the bytespike-dropped-params header.",
)


@dataclass(frozen=True)
class ChatDialect:
    """How one Chat Completions upstream differs from plain OpenAI Chat. Defaults suit a generic
    compatible server (and gpt-4o-era OpenAI)."""

    max_tokens_field: str = "max_tokens"
    """"max_completion_tokens" for OpenAI reasoning models (gpt-5 family, o-series)."""
    max_output_tokens: int | None = None
    """Clamp max_tokens to what the model accepts."""
    efforts: tuple[str, ...] = ()
    """reasoning_effort values the model accepts; empty = no reasoning_effort field at all."""
    effort_off: str | None = None
    """reasoning_effort sent when the client asked for no thinking ("none" on gpt-5.1+); None omits it."""
    thinking_toggle: bool = False
    """Send ``thinking: {"type": "enabled"|"disabled"}`` (DeepSeek)."""
    sampling_with_reasoning: bool = True
    """False: temperature/top_p are dropped while reasoning is on (OpenAI rejects them)."""
    default_sampling_only: bool = False
    """True: temperature and top_p other than 1 are always dropped (OpenAI reasoning models)."""
    forced_tool_with_reasoning: bool = True
    """False: a forced tool_choice (any/tool) turns reasoning off for that request (DeepSeek)."""
    reasoning_field: str | None = None
    """Assistant-message field that carries reasoning text back ("reasoning_content" for DeepSeek)."""
    supports_stop: bool = True
    max_stop: int = 4
    supports_top_k: bool = False
    supports_images: bool = True
    """False: images become a text note (text-only models such as DeepSeek's)."""
    supports_files: bool = True
    """False: PDF documents become a text note."""
    user_field: str | None = "user"
    cache_control: bool = False
    """Pass Anthropic cache_control through on content parts (OpenRouter to Claude)."""
    tool_name_limit: int = 64


GENERIC: Final = ChatDialect()
OPENAI_GPT5: Final = ChatDialect(
    max_tokens_field="max_completion_tokens",
    efforts=("low", "medium", "high", "xhigh"),
    effort_off="none",
    sampling_with_reasoning=False,
    default_sampling_only=True,
)
OPENAI_O_SERIES: Final = ChatDialect(
    max_tokens_field="max_completion_tokens",
    efforts=("low", "medium", "high"),
    sampling_with_reasoning=False,
    default_sampling_only=True,
    supports_stop=False,
)
DEEPSEEK: Final = ChatDialect(
    supports_images=False,
    supports_files=False,
    efforts=("high", "max"),
    thinking_toggle=True,
    forced_tool_with_reasoning=False,
    reasoning_field="reasoning_content",
)


def preset_for_model(model: str) -> str | None:
    """The preset OpenAI's own rules give a model name: gpt-5* -> openai_gpt5, o1/o3/o4* ->
    openai_o_series, anything else None (generic)."""
    family = openai_reasoning_family(model)
    return f"openai_{family}" if family else None


def _refused_sampling(req: Mapping[str, Any], dialect: ChatDialect) -> list[str]:
    if not dialect.default_sampling_only:
        return []
    return [k for k in ("temperature", "top_p") if req.get(k) is not None and req.get(k) != 1]


def dropped_params(req: Mapping[str, Any], dialect: ChatDialect = GENERIC) -> list[str]:
    """Parameters of a Messages request this upstream refuses and ``to_chat_request`` leaves out."""
    out = _refused_sampling(req, dialect)
    if req.get("top_k") is not None and not dialect.supports_top_k:
        out.append("top_k")
    if req.get("stop_sequences") and not dialect.supports_stop:
        out.append("stop_sequences")
    return out


def fit_chat_body(req: dict[str, Any], dialect: ChatDialect) -> tuple[dict[str, Any], list[str]]:
    """A Chat client's own body made acceptable to this upstream: ``max_tokens`` renamed to the
    field the model takes, sampling it refuses dropped. Returns (body, names of dropped fields)."""
    dropped = _refused_sampling(req, dialect)
    out = {k: v for k, v in req.items() if k not in dropped}
    if dialect.max_tokens_field != "max_tokens" and "max_tokens" in out:
        value = out.pop("max_tokens")
        out.setdefault(dialect.max_tokens_field, value)
    if "stop" in out and not dialect.supports_stop:
        out.pop("stop")
        dropped.append("stop")
    return out, dropped


def chat_tool_names(req: Mapping[str, Any], dialect: ChatDialect = GENERIC) -> dict[str, str]:
    """Upstream tool name -> client tool name for names shortened on the way up; give it to the
    response translators so clients see their own names."""
    return tool_name_map(req, dialect.tool_name_limit)


# --- request -------------------------------------------------------------------------------------


def to_chat_request(
    req: dict[str, Any], upstream_model: str, dialect: ChatDialect = GENERIC
) -> dict[str, Any]:
    """Messages request body -> Chat Completions body."""
    tool_choice = mapping(req.get("tool_choice"))
    forced = tool_choice.get("type") in ("any", "tool")
    effort = requested_effort(req)
    if effort is not None and forced and not dialect.forced_tool_with_reasoning:
        effort = None
    reasoning_on = effort is not None and bool(dialect.efforts or dialect.thinking_toggle)

    body: dict[str, Any] = {"model": upstream_model, "messages": _messages(req, dialect)}
    max_tokens = req.get("max_tokens")
    if isinstance(max_tokens, int):
        if dialect.max_output_tokens is not None:
            max_tokens = min(max_tokens, dialect.max_output_tokens)
        body[dialect.max_tokens_field] = max_tokens
    if not (reasoning_on and not dialect.sampling_with_reasoning):
        refused = _refused_sampling(req, dialect)
        for key in ("temperature", "top_p"):
            if req.get(key) is not None and key not in refused:
                body[key] = req[key]
    if dialect.supports_top_k and req.get("top_k") is not None:
        body["top_k"] = req["top_k"]
    stops = [s for s in req.get("stop_sequences") or () if isinstance(s, str) and s]
    if stops and dialect.supports_stop:
        body["stop"] = stops[: dialect.max_stop]

    tools = _tools(req, dialect)
    if tools:
        body["tools"] = tools
        choice = _tool_choice(tool_choice, dialect)
        if choice is not None:
            body["tool_choice"] = choice
        if tool_choice.get("disable_parallel_tool_use") and tool_choice.get("type") != "none":
            body["parallel_tool_calls"] = False

    if dialect.efforts:
        if reasoning_on and effort is not None:
            body["reasoning_effort"] = snap_effort(effort, dialect.efforts)
        elif dialect.effort_off is not None:
            body["reasoning_effort"] = dialect.effort_off
    if dialect.thinking_toggle:
        body["thinking"] = {"type": "enabled" if reasoning_on else "disabled"}

    user = mapping(req.get("metadata")).get("user_id")
    if isinstance(user, str) and user and dialect.user_field:
        body[dialect.user_field] = (
            user if len(user) <= 64 else "u_" + hashlib.sha256(user.encode()).hexdigest()[:40]
        )

    schema = _output_schema(req)
    if schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "structured_output", "schema": schema},
        }

    if req.get("stream"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _output_schema(req: Mapping[str, Any]) -> dict[str, Any] | None:
    fmt = mapping(req.get("output_config")).get("format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    return None


def _tools(req: Mapping[str, Any], dialect: ChatDialect) -> list[dict[str, Any]]:
    out = []
    for tool in req.get("tools") or ():
        if not isinstance(tool, Mapping) or tool.get("type") not in (None, "custom") or not tool.get("name"):
            continue
        fn: dict[str, Any] = {"name": upstream_tool_name(tool["name"], dialect.tool_name_limit)}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        if tool.get("strict"):
            fn["strict"] = True
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Mapping[str, Any], dialect: ChatDialect) -> Any:
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and choice.get("name"):
        return {
            "type": "function",
            "function": {"name": upstream_tool_name(choice["name"], dialect.tool_name_limit)},
        }
    return None


def _text_part(block: Mapping[str, Any], dialect: ChatDialect) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": block.get("text", "")}
    if dialect.cache_control and block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single plain text part is sent as a string; anything else as a part list."""
    if len(parts) == 1 and parts[0].get("type") == "text" and "cache_control" not in parts[0]:
        return str(parts[0]["text"])
    return parts


def _messages(req: Mapping[str, Any], dialect: ChatDialect) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = system_texts(req)
    if system:
        if dialect.cache_control and any(b.get("cache_control") for b in system):
            out.append({"role": "system", "content": [_text_part(b, dialect) for b in system]})
        else:
            out.append({"role": "system", "content": "\n\n".join(b["text"] for b in system)})
    for msg in req.get("messages") or ():
        if not isinstance(msg, Mapping):
            continue
        role = msg.get("role")
        blocks = blocks_of(msg.get("content"))
        if role == "system":
            text = "\n\n".join(b.get("text", "") for b in blocks if b.get("type") == "text" and b.get("text"))
            if text:
                out.append({"role": "system", "content": text})
        elif role == "assistant":
            assistant = _assistant(blocks, dialect)
            if assistant is not None:
                out.append(assistant)
        else:
            out.extend(_user(blocks, dialect))
    return out


def _assistant(blocks: list[dict[str, Any]], dialect: ChatDialect) -> dict[str, Any] | None:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            texts.append(block["text"])
        elif kind == "tool_use":
            args = block.get("input")
            calls.append(
                {
                    "id": sanitize_id(block.get("id"), f"call_{len(calls)}"),
                    "type": "function",
                    "function": {
                        "name": upstream_tool_name(str(block.get("name") or ""), dialect.tool_name_limit),
                        "arguments": orjson.dumps(args if isinstance(args, dict) else {}).decode(),
                    },
                }
            )
        elif kind == "thinking" and _own_reasoning(block.get("signature")) and block.get("thinking"):
            reasoning.append(block["thinking"])
    if not texts and not calls:
        return None
    msg: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    if dialect.reasoning_field:
        msg[dialect.reasoning_field] = "".join(reasoning)
    return msg


def _own_reasoning(signature: Any) -> bool:
    """Reasoning text that may go back upstream: signed by this gateway as reasoning, or unsigned."""
    if not signature:
        return True
    parsed = read_gateway_signature(signature)
    return parsed is not None and parsed[0] == SIG_REASONING


def _user(blocks: list[dict[str, Any]], dialect: ChatDialect) -> list[dict[str, Any]]:
    """One user turn: a tool message per tool_result first, then one user message with the rest
    (attachments the tool messages could not carry come first in it)."""
    tools: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_result":
            call_id = sanitize_id(block.get("tool_use_id"), "call_unknown")
            text, media = _tool_result(block)
            notes = [p["text"] for p in _fit(media, dialect) if p.get("type") == "text"]
            media = [p for p in media if p.get("type") != "text" and _supported(p, dialect)]
            if notes:
                text = "\n".join([text, *notes]) if text else "\n".join(notes)
            if media:
                note = f"[{len(media)} attachment(s) from this tool result follow in the next user message]"
                text = f"{text}\n{note}" if text else note
                attachments.append({"type": "text", "text": f"Attachments from tool result {call_id}:"})
                attachments.extend(media)
            tools.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind == "text":
            if block.get("text"):
                parts.append(_text_part(block, dialect))
        else:
            parts.extend(_fit(_media_parts(block), dialect))
    out = list(tools)
    content = attachments + parts
    if content:
        out.append({"role": "user", "content": _collapse(content)})
    return out


def _tool_result(block: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    else:
        for item in blocks_of(content):
            kind = item.get("type")
            if kind == "text":
                if item.get("text"):
                    texts.append(item["text"])
            elif kind == "search_result":
                inner = "\n".join(
                    b.get("text", "") for b in blocks_of(item.get("content")) if b.get("type") == "text"
                )
                texts.append("\n".join(x for x in (item.get("title"), item.get("source"), inner) if x))
            elif kind == "document" and (item.get("source") or {}).get("type") == "text":
                texts.extend(p["text"] for p in _media_parts(item) if p.get("type") == "text")
            else:
                media.extend(_media_parts(item))
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return text, media


def _supported(part: Mapping[str, Any], dialect: ChatDialect) -> bool:
    kind = part.get("type")
    return (kind != "image_url" or dialect.supports_images) and (kind != "file" or dialect.supports_files)


def _fit(parts: list[dict[str, Any]], dialect: ChatDialect) -> list[dict[str, Any]]:
    """Parts the upstream cannot read become a short text note, so the model knows something was there."""
    out = []
    for part in parts:
        if _supported(part, dialect):
            out.append(part)
        elif part.get("type") == "image_url":
            out.append(
                {"type": "text", "text": "[an image was attached here; this model cannot read images]"}
            )
        else:
            name = mapping(part.get("file")).get("filename") or "document"
            out.append({"type": "text", "text": f"[{name} was attached here; this model cannot read files]"})
    return out


def _media_parts(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An image or document block as Chat content parts; other block kinds contribute nothing."""
    kind = block.get("type")
    source = mapping(block.get("source"))
    src = source.get("type")
    if kind == "image":
        if src == "base64":
            url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
            return [{"type": "image_url", "image_url": {"url": url}}]
        if src == "url" and source.get("url"):
            return [{"type": "image_url", "image_url": {"url": source["url"]}}]
        return []
    if kind != "document":
        return []
    title = block.get("title")
    if src == "base64":
        media_type = source.get("media_type", "application/pdf")
        file = {
            "filename": title or "document.pdf",
            "file_data": f"data:{media_type};base64,{source.get('data', '')}",
        }
        return [{"type": "file", "file": file}]
    if src == "text":
        data = str(source.get("data", ""))
        return [{"type": "text", "text": f"{title}\n{data}" if title else data}] if data or title else []
    if src == "url":
        return [
            {"type": "text", "text": f"[document{': ' + title if title else ''}] {source.get('url', '')}"}
        ]
    if src == "content":
        out: list[dict[str, Any]] = []
        for inner in blocks_of(source.get("content")):
            if inner.get("type") == "text" and inner.get("text"):
                out.append({"type": "text", "text": inner["text"]})
            else:
                out.extend(_media_parts(inner))
        return out
    return []


# --- response ------------------------------------------------------------------------------------


def from_chat_response(
    resp: dict[str, Any], model: str, tool_names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Chat completion -> Anthropic Message (``model`` = what the client asked for)."""
    translator = ChatStreamTranslator(model, new_message_id(resp.get("id")), tool_names)
    choices = resp.get("choices") or [{}]
    choice = mapping(choices[0])
    message = mapping(choice.get("message"))
    delta: dict[str, Any] = {
        k: message.get(k) for k in ("reasoning_content", "reasoning", "content", "refusal")
    }
    delta["tool_calls"] = [dict(call, index=i) for i, call in enumerate(message.get("tool_calls") or ())]
    finish_reason = choice.get("finish_reason") or "stop"
    chunk = {
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        "usage": resp.get("usage") or {},
    }
    translator.feed(chunk)
    translator.finish(done=True)
    return translator.message()


@dataclass
class _Call:
    id: str
    name: str
    pending: str = ""
    started: bool = False


class ChatStreamTranslator(JsonEventSource):
    """Chat Completions chunks -> Anthropic stream events, one parsed ``data:`` chunk at a time.

    Only choice 0 is read. The message ends when a finish_reason has been seen and usage arrives
    (with it or in the ``choices: []`` chunk after it), or at ``finish()``. Call ``finish(done=True)``
    on ``data: [DONE]`` and ``finish()`` on a bare end of stream.
    """

    def __init__(
        self, model: str, message_id: str | None = None, tool_names: Mapping[str, str] | None = None
    ) -> None:
        self.model = model
        self._message_id = message_id
        self._names = dict(tool_names or {})
        self._builder: MessageStreamBuilder | None = None
        self._calls: dict[int, _Call] = {}
        self._open_call: _Call | None = None
        self._finish_reason: str | None = None
        self._refused = False
        self._saw_usage = False
        self._saw_done = False
        self.usage: dict[str, int] = empty_usage()

    @property
    def completed(self) -> bool:
        """A finish_reason was seen, and usage or [DONE] after it (or the relay saw [DONE])."""
        return (self._finish_reason is not None and (self._saw_usage or self._saw_done)) or self._done

    def error_message(self, payload: dict[str, Any]) -> str | None:
        """An in-stream error object without choices ends the stream as a failure."""
        if "error" in payload and not payload.get("choices"):
            err = payload["error"] if isinstance(payload["error"], dict) else {}
            return str(err.get("message") or "the upstream stream failed")
        return None

    def feed(self, chunk: dict[str, Any]) -> Events:
        builder, out = self._start(chunk)
        if builder.ended:
            return out
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, Mapping) else str(error)
            return out + builder.error("api_error", str(message or "upstream stream error"))
        usage = chunk.get("usage")
        if isinstance(usage, Mapping) and usage:
            self.usage = usage_from_openai(usage)
            self._saw_usage = True
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            if self._finish_reason is None:
                out += self._delta(builder, choice.get("delta") or {})
                if choice.get("finish_reason"):
                    self._finish_reason = str(choice["finish_reason"])
                    out += builder.close()
        if self._finish_reason is not None and isinstance(usage, Mapping) and usage:
            out += self._end(builder)
        return out

    def finish(self, done: bool = False) -> Events:
        """Upstream ended: close whatever is open. ``done`` = the upstream sent [DONE]."""
        self._saw_done = self._saw_done or done
        builder, out = self._start({})
        return out + self._end(builder)

    def fail(self, error_type: str, message: str) -> Events:
        """The upstream broke mid-stream: an ``error`` event ends the client stream."""
        builder, out = self._start({})
        return out + builder.error(error_type, message)

    def message(self) -> dict[str, Any]:
        """The Message the emitted events describe."""
        builder, _ = self._start({})
        return builder.message()

    # --- internals ---------------------------------------------------------------------------

    def _start(self, chunk: Mapping[str, Any]) -> tuple[MessageStreamBuilder, Events]:
        if self._builder is None:
            message_id = self._message_id or new_message_id(chunk.get("id"))
            self._builder = MessageStreamBuilder(self.model, message_id, gateway_signature(SIG_REASONING))
            return self._builder, self._builder.start()
        return self._builder, []

    def _end(self, builder: MessageStreamBuilder) -> Events:
        reason = "refusal" if self._refused else stop_from_openai(self._finish_reason)
        return builder.finish(reason, self.usage)

    def _delta(self, builder: MessageStreamBuilder, delta: Mapping[str, Any]) -> Events:
        out: Events = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._open_call = None
            out += builder.thinking(reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._open_call = None
            out += builder.text(content)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refused = True
            self._open_call = None
            out += builder.text(refusal)
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, Mapping):
                out += self._tool_delta(builder, call, position)
        return out

    def _tool_delta(self, builder: MessageStreamBuilder, call: Mapping[str, Any], position: int) -> Events:
        index = call.get("index")
        index = index if isinstance(index, int) else position
        fn = mapping(call.get("function"))
        raw_id, name, args = call.get("id"), fn.get("name"), fn.get("arguments")
        args = args if isinstance(args, str) else ("" if args is None else orjson.dumps(args).decode())
        entry = self._calls.get(index)
        if entry is None or (raw_id and entry.started and sanitize_id(raw_id, "") != entry.id):
            fallback = f"toolu_{builder.message_id.removeprefix('msg_')}_{len(self._calls)}"
            entry = _Call(id=sanitize_id(raw_id, fallback), name="")
            self._calls[index] = entry
        if isinstance(name, str) and name and not entry.name:
            entry.name = self._names.get(name, name)
        if not entry.started:
            entry.pending += args
            if not entry.name:
                return []
            entry.started = True
            self._open_call = entry
            out = builder.tool_use(entry.id, entry.name, entry.pending)
            entry.pending = ""
            return out
        if entry is self._open_call and builder.open_block == "tool_use":
            return builder.tool_input(args)
        return []
