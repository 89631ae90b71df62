"""Chat messages -> Messages system blocks and alternating turns, each tool call paired with its result."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

import orjson

from bytespike.protocols.openai_chat.inbound.common import ChatRequestError
from bytespike.protocols.openai_chat.inbound.content import _content_blocks

_ID_OK: Final = re.compile(r"[a-zA-Z0-9_-]+")
_ID_BAD_CHAR: Final = re.compile(r"[^a-zA-Z0-9_-]")
_PLACEHOLDER: Final = "..."


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
