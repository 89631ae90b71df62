"""Anthropic Messages -> OpenAI Responses requests, for Messages clients reaching Responses upstreams.

Stateless: every request says ``store: false`` and asks for ``reasoning.encrypted_content``, so a
reasoning item comes back whole; it travels to the client inside a thinking block's signature
(``common.reasoning_signature``) and goes back upstream unchanged on the next turn. Answers come
back through ``stream.ResponsesStreamTranslator``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from bytespike.protocols.hub import (
    blocks_of,
    mapping,
    openai_reasoning_family,
    requested_effort,
    sanitize_id,
    snap_effort,
    system_texts,
    tool_name_map,
    upstream_tool_name,
)
from bytespike.protocols.openai_responses.common import reasoning_item


@dataclass(frozen=True)
class ResponsesDialect:
    """How one Responses upstream (model family) differs. Defaults suit a non-reasoning model."""

    efforts: tuple[str, ...] = ()
    """reasoning.effort values the model accepts; empty = no reasoning settings at all."""
    effort_off: str | None = None
    """reasoning.effort sent when the client asked for no thinking ("none" on gpt-5.1+)."""
    default_sampling_only: bool = False
    """True: temperature and top_p other than 1 are dropped (OpenAI reasoning models refuse them)."""
    min_output_tokens: int = 16
    tool_name_limit: int = 64


GENERIC: Final = ResponsesDialect()
OPENAI_GPT5: Final = ResponsesDialect(
    efforts=("low", "medium", "high", "xhigh"), effort_off="none", default_sampling_only=True
)
OPENAI_O_SERIES: Final = ResponsesDialect(efforts=("low", "medium", "high"), default_sampling_only=True)

def preset_for_model(model: str) -> str | None:
    """The preset OpenAI's own rules give a model name: gpt-5* -> openai_gpt5, o1/o3/o4* ->
    openai_o_series, anything else None (generic)."""
    family = openai_reasoning_family(model)
    return f"openai_{family}" if family else None


def responses_tool_names(req: Mapping[str, Any], dialect: ResponsesDialect = GENERIC) -> dict[str, str]:
    """Upstream tool name -> client tool name for names shortened on the way up."""
    return tool_name_map(req, dialect.tool_name_limit)


def dropped_params(req: Mapping[str, Any], dialect: ResponsesDialect = GENERIC) -> list[str]:
    """Request parameters this upstream refuses and ``to_responses_request`` leaves out."""
    out = []
    if dialect.default_sampling_only:
        out += [k for k in ("temperature", "top_p") if req.get(k) is not None and req.get(k) != 1]
    if req.get("top_k") is not None:
        out.append("top_k")
    if req.get("stop_sequences"):
        out.append("stop_sequences")
    return out


# --- request -------------------------------------------------------------------------------------


def to_responses_request(
    req: Mapping[str, Any], upstream_model: str, dialect: ResponsesDialect = GENERIC
) -> dict[str, Any]:
    """Messages request body -> Responses body (stateless)."""
    body: dict[str, Any] = {"model": upstream_model}
    system = system_texts(req)
    if system:
        body["instructions"] = "\n\n".join(b["text"] for b in system)
    body["input"] = _input(req, dialect)
    max_tokens = req.get("max_tokens")
    if isinstance(max_tokens, int):
        body["max_output_tokens"] = max(max_tokens, dialect.min_output_tokens)
    dropped = set(dropped_params(req, dialect))
    for key in ("temperature", "top_p"):
        if req.get(key) is not None and key not in dropped:
            body[key] = req[key]

    tools = _tools(req, dialect)
    choice = mapping(req.get("tool_choice"))
    if tools:
        body["tools"] = tools
        tc = _tool_choice(choice, dialect)
        if tc is not None:
            body["tool_choice"] = tc
        if choice.get("disable_parallel_tool_use") and choice.get("type") != "none":
            body["parallel_tool_calls"] = False

    effort = requested_effort(req)
    if dialect.efforts:
        if effort is not None:
            body["reasoning"] = {"effort": snap_effort(effort, dialect.efforts), "summary": "auto"}
        elif dialect.effort_off is not None:
            body["reasoning"] = {"effort": dialect.effort_off}
        body["include"] = ["reasoning.encrypted_content"]
    body["store"] = False

    user = mapping(req.get("metadata")).get("user_id")
    if isinstance(user, str) and user:
        body["safety_identifier"] = (
            user if len(user) <= 64 else "u_" + hashlib.sha256(user.encode()).hexdigest()[:40]
        )
    fmt = mapping(req.get("output_config")).get("format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        body["text"] = {"format": {"type": "json_schema", "name": "structured_output", "schema": fmt["schema"],
                                   "strict": False}}
    if req.get("stream"):
        body["stream"] = True
    return body


def _tools(req: Mapping[str, Any], dialect: ResponsesDialect) -> list[dict[str, Any]]:
    out = []
    for tool in req.get("tools") or ():
        if not isinstance(tool, Mapping) or tool.get("type") not in (None, "custom") or not tool.get("name"):
            continue
        fn: dict[str, Any] = {"type": "function", "name": upstream_tool_name(tool["name"], dialect.tool_name_limit)}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        # Omitted, OpenAI turns strict mode on and makes every property required.
        fn["strict"] = bool(tool.get("strict"))
        out.append(fn)
    return out


def _tool_choice(choice: Mapping[str, Any], dialect: ResponsesDialect) -> Any:
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        return "required"
    if kind == "tool" and choice.get("name"):
        return {"type": "function", "name": upstream_tool_name(choice["name"], dialect.tool_name_limit)}
    return None


def _input(req: Mapping[str, Any], dialect: ResponsesDialect) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for msg in req.get("messages") or ():
        if not isinstance(msg, Mapping):
            continue
        role = msg.get("role")
        blocks = blocks_of(msg.get("content"))
        if role == "assistant":
            out.extend(_assistant(blocks, dialect))
        elif role == "system":
            text = "\n\n".join(b["text"] for b in blocks if b.get("type") == "text" and b.get("text"))
            if text:
                out.append({"role": "developer", "content": text})
        else:
            out.extend(_user(blocks))
    return out


def _assistant(blocks: list[dict[str, Any]], dialect: ResponsesDialect) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []

    def flush() -> None:
        if texts:
            out.append({"type": "message", "role": "assistant", "content": list(texts)})
            texts.clear()

    for block in blocks:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            texts.append({"type": "output_text", "text": block["text"]})
        elif kind == "thinking":
            item = reasoning_item(block.get("signature"))
            if item is not None:
                flush()
                out.append(item)
        elif kind == "tool_use":
            flush()
            args = block.get("input")
            out.append({
                "type": "function_call",
                "call_id": sanitize_id(block.get("id"), f"call_{len(out)}"),
                "name": upstream_tool_name(str(block.get("name") or ""), dialect.tool_name_limit),
                "arguments": orjson.dumps(args if isinstance(args, dict) else {}).decode(),
            })
    flush()
    return out


def _user(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool outputs first (they answer the previous turn's calls), then one user message with the rest."""
    outputs: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_result":
            outputs.append({
                "type": "function_call_output",
                "call_id": sanitize_id(block.get("tool_use_id"), "call_unknown"),
                "output": _tool_output(block),
            })
        elif kind == "text":
            if block.get("text"):
                parts.append({"type": "input_text", "text": block["text"]})
        else:
            parts.extend(_media(block))
    if parts:
        outputs.append({"role": "user", "content": parts})
    return outputs


def _tool_output(block: Mapping[str, Any]) -> str | list[dict[str, Any]]:
    content = block.get("content")
    prefix = "Error: " if block.get("is_error") else ""
    if isinstance(content, str) or content is None:
        return prefix + (content or "") if (content or prefix) else ""
    parts: list[dict[str, Any]] = []
    for item in blocks_of(content):
        if item.get("type") == "text":
            if item.get("text"):
                parts.append({"type": "input_text", "text": item["text"]})
        else:
            parts.extend(_media(item))
    if all(p["type"] == "input_text" for p in parts):
        return prefix + "\n".join(p["text"] for p in parts)
    if prefix:
        parts.insert(0, {"type": "input_text", "text": prefix.strip()})
    return parts


def _media(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An image or document block as Responses input parts; other block kinds contribute nothing."""
    kind = block.get("type")
    source = mapping(block.get("source"))
    src = source.get("type")
    if kind == "image":
        if src == "base64":
            url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
            return [{"type": "input_image", "image_url": url, "detail": "auto"}]
        if src == "url" and source.get("url"):
            return [{"type": "input_image", "image_url": source["url"], "detail": "auto"}]
        return []
    if kind != "document":
        return []
    title = block.get("title")
    if src == "base64":
        media_type = source.get("media_type", "application/pdf")
        return [{"type": "input_file", "filename": title or "document.pdf",
                 "file_data": f"data:{media_type};base64,{source.get('data', '')}"}]
    if src == "url" and source.get("url"):
        return [{"type": "input_file", "file_url": source["url"]}]
    if src == "text":
        data = str(source.get("data", ""))
        text = f"{title}\n{data}" if title else data
        return [{"type": "input_text", "text": text}] if text else []
    if src == "content":
        out: list[dict[str, Any]] = []
        for inner in blocks_of(source.get("content")):
            if inner.get("type") == "text" and inner.get("text"):
                out.append({"type": "input_text", "text": inner["text"]})
            else:
                out.extend(_media(inner))
        return out
    return []
