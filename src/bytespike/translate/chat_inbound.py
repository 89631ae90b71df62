"""OpenAI Chat Completions clients reaching an Anthropic Messages upstream.

Three pure pieces, no I/O: a Chat request becomes a clean Messages request (also the input of the
Messages -> Gemini / OpenAI-compatible translators), a Message becomes a ``chat.completion``, and
a Messages SSE stream becomes ``chat.completion.chunk`` objects through a small state machine.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from random import getrandbits
from typing import Any, Final

import orjson

DONE: Final = b"data: [DONE]\n\n"

DEFAULT_MAX_TOKENS: Final = 4096
"""Messages requires ``max_tokens``; Chat makes it optional. 4096 is used when the client sets none."""

CAVEATS: Final[list[str]] = [
    "n > 1 is rejected (one choice per request).",
    "logprobs, top_logprobs, logit_bias, seed, presence_penalty, frequency_penalty, prediction, store, "
    "service_tier, verbosity, prompt_cache_key, web_search_options and metadata are dropped.",
    "temperature is clamped into [0, 1]; when both temperature and top_p are set, top_p is dropped.",
    "system and developer messages anywhere in the conversation are hoisted, in order, into the top-level system.",
    "message `name` fields are dropped; tool call ids outside [a-zA-Z0-9_-] are rewritten identically "
    "on calls and results.",
    "a tool result answering no call of the preceding assistant turn is sent as user text.",
    "response_format json_object becomes a system instruction; json_schema becomes output_config.format "
    "(strict and name are dropped).",
    "reasoning_effort becomes thinking with a fixed budget (low 1024, medium 2048, high 4096, xhigh 8192, "
    "max 16384), max_tokens is raised above the budget when needed, temperature/top_p are dropped; thinking is "
    "left off when a tool is forced, while a tool loop is in progress, or after an assistant prefill, since "
    "earlier thinking blocks cannot be replayed from Chat history.",
    "thinking comes back as the non-standard `reasoning_content`; its signature and redacted thinking are dropped.",
    "server tool blocks (web search, code execution) and citations are not returned.",
    "finish_reason cannot say which stop sequence matched; pause_turn maps to stop, "
    "model_context_window_exceeded to length, refusal to content_filter.",
    "audio input and output, and file_id references, are rejected.",
]

_EFFORT_BUDGET: Final = {"low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
_EFFORT_OFF: Final = frozenset({"none", "minimal"})
_FINISH: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_ID_OK: Final = re.compile(r"[a-zA-Z0-9_-]+")
_ID_BAD_CHAR: Final = re.compile(r"[^a-zA-Z0-9_-]")
_JSON_OBJECT_INSTRUCTION: Final = "Respond only with one valid JSON object, with no text before or after it."
_PLACEHOLDER: Final = "..."
_DELTA_FIELD: Final = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}
_USAGE_KEYS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class ChatRequestError(ValueError):
    """An invalid Chat Completions request; ``param`` names the offending field as OpenAI errors do."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# --------------------------------------------------------------------------------------------------
# Request: Chat Completions -> Messages
# --------------------------------------------------------------------------------------------------


def chat_to_messages_request(req: dict, model: str) -> dict:
    """Chat Completions request -> Anthropic Messages request for ``model``.

    Defaults and approximations: ``max_tokens`` is ``DEFAULT_MAX_TOKENS`` (4096) when the client sets
    neither ``max_completion_tokens`` nor ``max_tokens``; temperature is clamped into Anthropic's
    [0, 1] (not rescaled); ``response_format: json_object`` is asked for with a system instruction.
    Raises ChatRequestError for what cannot be sent (see CAVEATS for what is dropped instead).
    """
    if not isinstance(req, dict):
        raise ChatRequestError("the request body must be a JSON object")
    _reject_unsupported(req)
    system, turns = _convert_messages(req.get("messages"))
    tools = _tools(req)
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(req)}

    choice = _tool_choice(req, tools)
    if not tools:
        used = _tool_names_in(turns)
        if used:
            # Declared tools are required to replay tool blocks; the client offered none, so none are called.
            tools = [{"name": n, "input_schema": _empty_schema()} for n in used]
            choice = {"type": "none"}

    fmt = req.get("response_format")
    output_format = _response_format(fmt, system)
    if system:
        out["system"] = system
    out["messages"] = turns
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
    stop = _stop_sequences(req.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    _sampling(req, out)
    user = req.get("user") if req.get("user") is not None else req.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    _thinking(req.get("reasoning_effort"), out)
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    stream = req.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise ChatRequestError("stream must be a boolean", "stream")
        out["stream"] = stream
    return out


def _reject_unsupported(req: dict) -> None:
    n = req.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ChatRequestError("n must be a positive integer", "n")
    if isinstance(n, int) and n > 1:
        raise ChatRequestError("n > 1 is not supported for this model; send one request per choice", "n")
    modalities = req.get("modalities")
    if (isinstance(modalities, list) and "audio" in modalities) or req.get("audio") is not None:
        raise ChatRequestError("audio output is not supported for this model", "modalities")


def _convert_messages(messages: object) -> tuple[list[dict], list[dict]]:
    """Returns (system blocks, alternating user/assistant turns that Messages accepts)."""
    if not isinstance(messages, list) or not messages:
        raise ChatRequestError("messages must be a non-empty array", "messages")
    system: list[dict] = []
    turns: list[dict] = []
    origins: dict[str, str] = {}  # tool_use id -> param of the call, for error messages
    legacy: dict[str, list[str]] = {}  # legacy function_call name -> ids awaiting a result
    for i, m in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ChatRequestError("each message must be an object", p)
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_content_blocks(m.get("content"), f"{p}.content", ("text",), required=True))
        elif role == "user":
            _append(
                turns,
                "user",
                _content_blocks(
                    m.get("content"), f"{p}.content", ("text", "image_url", "file"), required=True
                ),
            )
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(m, i, origins, legacy))
        elif role == "tool":
            _append(turns, "user", [_tool_result(m.get("tool_call_id"), m.get("content"), p, "tool_call_id")])
        elif role == "function":
            name = m.get("name")
            pending = legacy.get(name) if isinstance(name, str) else None
            call_id = pending.pop(0) if pending else f"unanswered_{i}"
            _append(turns, "user", [_tool_result(call_id, m.get("content"), p, "name")])
        else:
            raise ChatRequestError(
                f"unknown role {role!r}; expected system, developer, user, assistant or tool", f"{p}.role"
            )
    _pair_tool_results(turns, origins)
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": _PLACEHOLDER}]})
    _trim_prefill(turns)
    return system, turns


def _append(turns: list[dict], role: str, blocks: list[dict]) -> None:
    """Messages wants alternating roles: consecutive same-role turns become one."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _assistant_blocks(m: dict, i: int, origins: dict[str, str], legacy: dict[str, list[str]]) -> list[dict]:
    p = f"messages[{i}]"
    blocks = _content_blocks(m.get("content"), f"{p}.content", ("text", "refusal"), required=False)
    calls = m.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise ChatRequestError("tool_calls must be an array", f"{p}.tool_calls")
        for j, call in enumerate(calls):
            block = _tool_use(call, f"{p}.tool_calls[{j}]")
            origins.setdefault(block["id"], f"{p}.tool_calls[{j}]")
            blocks.append(block)
    fc = m.get("function_call")
    if isinstance(fc, dict):
        block = _tool_use({"id": f"call_fn_{i}", "function": fc}, f"{p}.function_call")
        legacy.setdefault(block["name"], []).append(block["id"])
        origins.setdefault(block["id"], f"{p}.function_call")
        blocks.append(block)
    return blocks


def _tool_use(call: object, p: str) -> dict:
    if not isinstance(call, dict):
        raise ChatRequestError("a tool call must be an object", p)
    kind = call.get("type", "function")
    if kind != "function":
        raise ChatRequestError(f"tool call type {kind!r} is not supported; use function", f"{p}.type")
    fn = call.get("function")
    if not isinstance(fn, dict):
        raise ChatRequestError("a tool call needs a function object", f"{p}.function")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ChatRequestError("a tool call needs a function name", f"{p}.function.name")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise ChatRequestError("a tool call needs an id", f"{p}.id")
    return {
        "type": "tool_use",
        "id": tool_id(call_id),
        "name": name,
        "input": _arguments(fn.get("arguments"), f"{p}.function.arguments"),
    }


def _arguments(raw: object, p: str) -> dict:
    """Chat carries arguments as a JSON string; Messages wants the object (empty arguments mean {})."""
    if raw is None or isinstance(raw, dict):
        return dict(raw or {})
    if not isinstance(raw, str):
        raise ChatRequestError("function arguments must be a JSON string", p)
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ChatRequestError(f"function arguments are not valid JSON: {exc}", p) from exc
    if not isinstance(value, dict):
        raise ChatRequestError("function arguments must be a JSON object", p)
    return value


def tool_id(raw: str) -> str:
    """A tool call id Messages accepts (^[a-zA-Z0-9_-]+$), the same for a call and its result.

    Valid ids pass unchanged; others get their bad characters replaced and a short hash of the
    original appended, so two different ids never collapse into one.
    """
    if _ID_OK.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{_ID_BAD_CHAR.sub('_', raw)}_{digest}"


def _tool_result(call_id: object, content: object, p: str, id_field: str) -> dict:
    if not isinstance(call_id, str) or not call_id:
        raise ChatRequestError("a tool message needs the tool_call_id it answers", f"{p}.{id_field}")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(call_id)}
    if isinstance(content, str):
        if content.strip():
            block["content"] = content
    else:
        parts = _content_blocks(content, f"{p}.content", ("text", "image_url", "file"), required=False)
        if parts:
            block["content"] = parts
    return block


def _content_blocks(content: object, p: str, allowed: tuple[str, ...], *, required: bool) -> list[dict]:
    """Chat content (a string or parts) -> Messages blocks; blank text is dropped (Messages rejects it)."""
    if content is None:
        if required:
            raise ChatRequestError("content is required", p)
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise ChatRequestError("content must be a string or an array of content parts", p)
    blocks = []
    for j, part in enumerate(content):
        block = _part(part, f"{p}[{j}]", allowed)
        if block is not None:
            blocks.append(block)
    return blocks


def _part(part: object, p: str, allowed: tuple[str, ...]) -> dict | None:
    if not isinstance(part, dict):
        raise ChatRequestError("a content part must be an object", p)
    kind = part.get("type")
    if kind in ("text", "refusal") and kind in allowed:
        text = part.get(kind)
        if not isinstance(text, str):
            raise ChatRequestError(f"a {kind} part needs a string {kind}", f"{p}.{kind}")
        if not text.strip():
            return None
        block: dict[str, Any] = {"type": "text", "text": text}
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        return block
    if kind == "image_url" and kind in allowed:
        return _image(part.get("image_url"), f"{p}.image_url")
    if kind == "file" and kind in allowed:
        return _document(part.get("file"), f"{p}.file")
    if kind in ("input_audio", "audio"):
        raise ChatRequestError("audio input is not supported for this model", f"{p}.type")
    raise ChatRequestError(f"content part type {kind!r} is not supported here", f"{p}.type")


def _image(value: object, p: str) -> dict:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise ChatRequestError("image_url needs a url", f"{p}.url")
    if url.startswith("data:"):
        media, data = _data_url(url, f"{p}.url")
        media = "image/jpeg" if media == "image/jpg" else media
        if media not in _IMAGE_TYPES:
            raise ChatRequestError(
                f"image type {media!r} is not supported; use JPEG, PNG, GIF or WebP", f"{p}.url"
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise ChatRequestError("image_url.url must be an http(s) URL or a base64 data URL", f"{p}.url")


def _document(value: object, p: str) -> dict:
    if not isinstance(value, dict):
        raise ChatRequestError("a file part needs a file object", p)
    data = value.get("file_data")
    if not isinstance(data, str) or not data:
        if value.get("file_id") is not None:
            raise ChatRequestError(
                "file_id references are not supported; send the file inline as file_data", f"{p}.file_id"
            )
        raise ChatRequestError("a file part needs file_data", f"{p}.file_data")
    media, payload = (
        _data_url(data, f"{p}.file_data") if data.startswith("data:") else ("application/pdf", data)
    )
    if media == "application/pdf":
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "base64", "media_type": media, "data": payload},
        }
    elif media == "text/plain":
        try:
            text = base64.b64decode(payload, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ChatRequestError("file_data is not base64 UTF-8 text", f"{p}.file_data") from exc
        block = {"type": "document", "source": {"type": "text", "media_type": media, "data": text}}
    else:
        raise ChatRequestError(
            f"file type {media!r} is not supported; use PDF or plain text", f"{p}.file_data"
        )
    filename = value.get("filename")
    if isinstance(filename, str) and filename:
        block["title"] = filename
    return block


def _data_url(url: str, p: str) -> tuple[str, str]:
    header, sep, data = url[5:].partition(",")
    params = header.split(";")
    if not sep or "base64" not in params[1:] or not data:
        raise ChatRequestError("data URLs must be base64: data:<media type>;base64,<data>", p)
    return params[0].strip().lower(), data


def _pair_tool_results(turns: list[dict], origins: dict[str, str]) -> None:
    """Results first in the user turn right after their calls, calls last in the assistant turn.

    A result answering no call of the preceding assistant turn becomes text; a call left unanswered is
    an error, as it is on OpenAI.
    """
    called: list[str] = []
    for turn in turns:
        blocks = turn["content"]
        if turn["role"] == "assistant":
            uses = [b for b in blocks if b["type"] == "tool_use"]
            turn["content"] = [b for b in blocks if b["type"] != "tool_use"] + uses
            called = [b["id"] for b in uses]
            continue
        answered: set[str] = set()
        results, rest = [], []
        for b in blocks:
            if b["type"] == "tool_result" and b["tool_use_id"] in called and b["tool_use_id"] not in answered:
                answered.add(b["tool_use_id"])
                results.append(b)
            elif b["type"] == "tool_result":
                rest.extend(_result_as_text(b))
            else:
                rest.append(b)
        _check_answered(called, answered, origins)
        turn["content"] = results + rest
        called = []
    _check_answered(called, set(), origins)


def _check_answered(called: list[str], answered: set[str], origins: dict[str, str]) -> None:
    missing = [c for c in called if c not in answered]
    if missing:
        raise ChatRequestError(
            "an assistant message with tool_calls must be followed by tool messages answering each call; "
            f"unanswered: {', '.join(missing)}",
            origins.get(missing[0]),
        )


def _result_as_text(block: dict) -> list[dict]:
    head = {"type": "text", "text": f"Result of tool call {block['tool_use_id']}:"}
    content = block.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": f"{head['text']}\n{content}"}]
    return [head, *(content or [])]


def _trim_prefill(turns: list[dict]) -> None:
    """A final assistant turn is a prefill, and Messages rejects one ending in whitespace."""
    last = turns[-1]
    if last["role"] != "assistant" or last["content"][-1]["type"] != "text":
        return
    block = last["content"][-1]
    block["text"] = block["text"].rstrip()


def _tool_names_in(turns: list[dict]) -> list[str]:
    names: list[str] = []
    for turn in turns:
        for b in turn["content"]:
            if b["type"] == "tool_use" and b["name"] not in names:
                names.append(b["name"])
    return names


def _tools(req: dict) -> list[dict]:
    out: list[dict] = []
    for field in ("tools", "functions"):
        raw = req.get(field)
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise ChatRequestError(f"{field} must be an array", field)
        for i, t in enumerate(raw):
            p = f"{field}[{i}]"
            if field == "functions":
                out.append(_tool_def(t, p))
                continue
            if not isinstance(t, dict) or t.get("type") != "function":
                kind = t.get("type") if isinstance(t, dict) else None
                raise ChatRequestError(f"tool type {kind!r} is not supported; use function", f"{p}.type")
            out.append(_tool_def(t.get("function"), f"{p}.function"))
    return out


def _tool_def(fn: object, p: str) -> dict:
    if not isinstance(fn, dict):
        raise ChatRequestError("a function tool needs a function object", p)
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ChatRequestError("a function tool needs a name", f"{p}.name")
    params = fn.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise ChatRequestError("parameters must be a JSON Schema object", f"{p}.parameters")
    schema = dict(params) if params else _empty_schema()
    schema.setdefault("type", "object")
    if schema["type"] != "object":
        raise ChatRequestError("parameters must be a JSON Schema of type object", f"{p}.parameters.type")
    tool: dict[str, Any] = {"name": name}
    description = fn.get("description")
    if isinstance(description, str) and description:
        tool["description"] = description
    tool["input_schema"] = schema
    return tool


def _empty_schema() -> dict:
    """A fresh schema each time: the request goes on to other translators, which may edit it."""
    return {"type": "object", "properties": {}}


def _tool_choice(req: dict, tools: list[dict]) -> dict | None:
    """tool_choice and parallel_tool_calls -> Messages tool_choice; None keeps the upstream default."""
    tc = req.get("tool_choice")
    if tc is None:
        tc = req.get("function_call")
    parallel = req.get("parallel_tool_calls")
    if tc is None and parallel is not False:
        return None
    choice: dict[str, Any]
    if tc is None or tc == "auto":
        choice = {"type": "auto"}
    elif tc == "required":
        choice = {"type": "any"}
    elif tc == "none":
        return {"type": "none"}
    elif isinstance(tc, dict) and isinstance(tc.get("name"), str):  # legacy function_call
        choice = {"type": "tool", "name": tc["name"]}
    elif isinstance(tc, dict) and tc.get("type") == "function":
        fn = tc.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise ChatRequestError("tool_choice.function.name is required", "tool_choice.function.name")
        choice = {"type": "tool", "name": name}
    elif isinstance(tc, dict) and tc.get("type") == "allowed_tools":
        choice = _allowed_tools(tc.get("allowed_tools"), tools)
    else:
        raise ChatRequestError("tool_choice must be none, auto, required or a function", "tool_choice")
    if parallel is False:
        choice["disable_parallel_tool_use"] = True
    return choice


def _allowed_tools(spec: object, tools: list[dict]) -> dict:
    """allowed_tools narrows the declared tools; the others are removed from the request."""
    if (
        not isinstance(spec, dict)
        or spec.get("mode") not in ("auto", "required")
        or not isinstance(spec.get("tools"), list)
    ):
        raise ChatRequestError(
            "allowed_tools needs mode auto or required and a tools array", "tool_choice.allowed_tools"
        )
    names = set()
    for t in spec["tools"]:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    tools[:] = [t for t in tools if t["name"] in names]
    return {"type": "auto" if spec["mode"] == "auto" else "any"}


def _max_tokens(req: dict) -> int:
    for field in ("max_completion_tokens", "max_tokens"):
        value = req.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ChatRequestError(f"{field} must be a positive integer", field)
        return value
    return DEFAULT_MAX_TOKENS


def _stop_sequences(stop: object) -> list[str]:
    if stop is None:
        return []
    values = [stop] if isinstance(stop, str) else stop
    if not isinstance(values, list) or not all(isinstance(s, str) for s in values):
        raise ChatRequestError("stop must be a string or an array of strings", "stop")
    return [s for s in values if s.strip()]


def _number(req: dict, field: str) -> float | None:
    value = req.get(field)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ChatRequestError(f"{field} must be a number", field)
    return value


def _sampling(req: dict, out: dict) -> None:
    """Messages takes temperature in [0, 1] (Chat: [0, 2]), and newer models refuse it with top_p."""
    temperature = _number(req, "temperature")
    top_p = _number(req, "top_p")
    if temperature is not None:
        out["temperature"] = min(max(temperature, 0.0), 1.0)
    elif top_p is not None:
        out["top_p"] = top_p
    top_k = req.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        out["top_k"] = top_k


def _thinking(effort: object, out: dict) -> None:
    """reasoning_effort -> a thinking budget, when the request can carry thinking at all."""
    if effort is None or effort in _EFFORT_OFF:
        return
    budget = _EFFORT_BUDGET.get(effort) if isinstance(effort, str) else None
    if budget is None:
        raise ChatRequestError(
            "reasoning_effort must be one of none, minimal, low, medium, high, xhigh, max", "reasoning_effort"
        )
    if out.get("tool_choice", {}).get("type") in ("any", "tool") or _replays_unsigned_turn(out["messages"]):
        return
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if out["max_tokens"] <= budget:
        out["max_tokens"] += budget
    for field in ("temperature", "top_p", "top_k"):
        out.pop(field, None)


def _replays_unsigned_turn(turns: list[dict]) -> bool:
    """With thinking on, the assistant turn being continued must start with its signed thinking block,
    which Chat history never carries: a prefill or a tool loop in progress rules thinking out."""
    last = turns[-1]
    return last["role"] == "assistant" or any(b["type"] == "tool_result" for b in last["content"])


def _response_format(fmt: object, system: list[dict]) -> dict | None:
    """json_schema -> output_config.format; json_object (or a schema-less json_schema) -> an instruction."""
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind in ("json_object", "json_schema"):
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if kind == "json_schema" and isinstance(schema, dict):
            return {"type": "json_schema", "schema": schema}
        system.append({"type": "text", "text": _JSON_OBJECT_INSTRUCTION})
        return None
    raise ChatRequestError(
        "response_format.type must be text, json_object or json_schema", "response_format.type"
    )


# --------------------------------------------------------------------------------------------------
# Response: Message -> chat.completion
# --------------------------------------------------------------------------------------------------


def message_to_chat_completion(
    msg: dict, model: str, completion_id: str | None = None, created: int | None = None
) -> dict:
    """Anthropic Message (non-stream) -> ``chat.completion``; ``model`` is what the client asked for."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict] = []
    for block in msg.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    text = "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    usage = _usage_fields(msg.get("usage"))
    return {
        "id": completion_id or _completion_id(msg.get("id")),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(msg.get("stop_reason"), bool(calls)),
            }
        ],
        "usage": chat_usage(usage, _thinking_tokens(msg.get("usage"))),
        "system_fingerprint": None,
    }


def finish_reason(stop_reason: object, called_tools: bool) -> str:
    """Messages stop_reason -> Chat finish_reason; tool_calls exactly when tool calls were returned."""
    reason = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls" and not called_tools:
        return "stop"
    if reason == "stop" and called_tools:
        return "tool_calls"
    return reason


def chat_usage(usage: dict, reasoning_tokens: int | None = None) -> dict:
    """Messages usage (input excludes cache reads and writes) -> Chat usage (prompt includes them)."""
    cache_read = usage.get("cache_read_input_tokens", 0)
    cache_write = usage.get("cache_creation_input_tokens", 0)
    prompt = usage.get("input_tokens", 0) + cache_read + cache_write
    completion = usage.get("output_tokens", 0)
    details: dict[str, int] = {"cached_tokens": cache_read}
    if cache_write > 0:
        details["cache_write_tokens"] = cache_write
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }
    if reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return out


def _usage_fields(usage: object) -> dict[str, int]:
    out = dict.fromkeys(_USAGE_KEYS, 0)
    _merge_usage(out, usage)
    return out


def _merge_usage(into: dict[str, int], usage: object) -> None:
    """Messages usage counts are cumulative: a present integer replaces, an absent one keeps."""
    if not isinstance(usage, dict):
        return
    for key in _USAGE_KEYS:
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            into[key] = value


def _thinking_tokens(usage: object) -> int | None:
    details = usage.get("output_tokens_details") if isinstance(usage, dict) else None
    value = details.get("thinking_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _completion_id(message_id: object) -> str:
    if isinstance(message_id, str) and message_id:
        return "chatcmpl-" + message_id.removeprefix("msg_")
    return f"chatcmpl-{getrandbits(128):032x}"


# --------------------------------------------------------------------------------------------------
# Stream: Messages SSE events -> chat.completion.chunk
# --------------------------------------------------------------------------------------------------


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
