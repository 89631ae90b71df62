"""OpenAI Responses request -> Anthropic Messages request, for Responses clients (Codex CLI, the
``openai`` SDK's ``client.responses``) reaching any model through the Messages translators.

Stateless: what a stored response would have remembered must come in ``input``. Thinking blocks
travel to the client as reasoning items whose ``encrypted_content`` carries them whole, and come
back from it the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from bytespike.protocols.hub import mapping, sanitize_id, string
from bytespike.protocols.openai_responses.common import ResponsesRequestError, unpack_thinking

DEFAULT_MAX_TOKENS: Final = 4096
_EFFORT_BUDGET: Final = {"low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768, "max": 32768}
_EFFORT_OFF: Final = frozenset({"none", "minimal"})
CUSTOM_ARG: Final = "input"
"""The one string argument a custom (freeform) tool takes when it reaches a model as a function."""
_DATA_URL = re.compile(r"^data:([\w/+.-]+);base64,(.*)$", re.S)


def custom_tool_names(req: Mapping[str, Any]) -> frozenset[str]:
    """Names of the request's custom (freeform) tools: their calls go back as custom_tool_call items."""
    return frozenset(
        t["name"] for t in req.get("tools") or ()
        if isinstance(t, Mapping) and t.get("type") == "custom" and isinstance(t.get("name"), str)
    )


def responses_to_messages_request(req: Mapping[str, Any], model: str,
                                  default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """Responses request -> Messages request for ``model``, with the effective ``max_tokens``
    (``max_output_tokens``, else ``default_max_tokens``, raised above a thinking budget); raises
    ResponsesRequestError for what cannot be served (``common.INBOUND_CAVEATS`` lists what is dropped)."""
    reject_stateful(req)
    system: list[dict[str, Any]] = []
    instructions = req.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append({"type": "text", "text": instructions})
    elif instructions is not None and not isinstance(instructions, str):
        raise ResponsesRequestError("instructions must be a string", "instructions")
    turns = _turns(req.get("input"), system)
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(req, default_max_tokens)}
    if system:
        out["system"] = system
    out["messages"] = turns
    tools = _tools(req.get("tools"))
    choice = _tool_choice(req.get("tool_choice"), req.get("parallel_tool_calls"))
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
    elif _tool_names_in(turns):
        # Replaying tool blocks needs them declared; the client offered none, so none are called.
        out["tools"] = [{"name": n, "input_schema": {"type": "object", "properties": {}}}
                        for n in sorted(_tool_names_in(turns))]
        out["tool_choice"] = {"type": "none"}
    _sampling(req, out)
    user = req.get("safety_identifier") or req.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    fmt = mapping(mapping(req.get("text")).get("format"))
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        out["output_config"] = {"format": {"type": "json_schema", "schema": fmt["schema"]}}
    _thinking(req.get("reasoning"), out)
    if req.get("stream") is True:
        out["stream"] = True
    return out


def reject_stateful(req: Mapping[str, Any]) -> None:
    """Refuse what only a server that stores responses could serve."""
    if req.get("previous_response_id"):
        raise ResponsesRequestError(
            "previous_response_id is not supported: this gateway stores no responses; send the whole "
            "conversation in input with store: false", "previous_response_id")
    if req.get("store") is True:
        raise ResponsesRequestError(
            "store: true is not supported: this gateway stores no responses; send store: false", "store")
    if req.get("conversation"):
        raise ResponsesRequestError("conversation is not supported: this gateway stores no conversations",
                                    "conversation")
    if req.get("background") is True:
        raise ResponsesRequestError("background: true is not supported; use POST /v1/tasks", "background")


def _max_tokens(req: Mapping[str, Any], default: int) -> int:
    value = req.get("max_output_tokens")
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ResponsesRequestError("max_output_tokens must be a positive integer", "max_output_tokens")
    return value


def _sampling(req: Mapping[str, Any], out: dict[str, Any]) -> None:
    for field in ("temperature", "top_p"):
        value = req.get(field)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ResponsesRequestError(f"{field} must be a number", field)
        out[field] = min(max(float(value), 0.0), 1.0)
    if "temperature" in out and "top_p" in out:
        out.pop("top_p")


def _thinking(reasoning: Any, out: dict[str, Any]) -> None:
    """reasoning.effort -> a thinking budget, when the conversation can carry thinking at all."""
    if reasoning is None:
        return
    if not isinstance(reasoning, Mapping):
        raise ResponsesRequestError("reasoning must be an object", "reasoning")
    effort = reasoning.get("effort")
    if effort is None:
        effort = "medium" if reasoning.get("summary") else None
    if effort is None or effort in _EFFORT_OFF:
        return
    budget = _EFFORT_BUDGET.get(effort) if isinstance(effort, str) else None
    if budget is None:
        raise ResponsesRequestError("reasoning.effort must be one of none, minimal, low, medium, high, xhigh",
                                    "reasoning.effort")
    if mapping(out.get("tool_choice")).get("type") in ("any", "tool") or _unsigned_tool_turn(out["messages"]):
        return
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if out["max_tokens"] <= budget:
        out["max_tokens"] = budget + DEFAULT_MAX_TOKENS
    for field in ("temperature", "top_p"):
        out.pop(field, None)


def _unsigned_tool_turn(turns: list[dict[str, Any]]) -> bool:
    """With thinking on, an assistant turn being continued (a tool loop) must start with its thinking
    block; when the client did not bring it back, thinking stays off for this request."""
    if not turns:
        return False
    last = turns[-1]
    if last["role"] == "assistant":
        return True
    if not any(b.get("type") == "tool_result" for b in last["content"]):
        return False
    previous = turns[-2] if len(turns) > 1 else None
    return previous is None or not any(
        b.get("type") in ("thinking", "redacted_thinking") for b in previous["content"][:1])


# --- input items -------------------------------------------------------------------------------


def _turns(items: Any, system: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(items, str):
        if not items:
            raise ResponsesRequestError("input must not be empty", "input")
        return [{"role": "user", "content": [{"type": "text", "text": items}]}]
    if not isinstance(items, list) or not items:
        raise ResponsesRequestError("input: field required (a string or a list of input items)", "input")
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ResponsesRequestError(f"input[{i}] must be an object", f"input[{i}]")
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                system.extend(b for b in _content(item.get("content"), i) if b["type"] == "text")
            elif role in ("user", "assistant"):
                add(str(role), _content(item.get("content"), i))
            else:
                raise ResponsesRequestError(f"input[{i}].role must be user, assistant, system or developer",
                                            f"input[{i}].role")
        elif kind in ("function_call", "custom_tool_call"):
            add("assistant", [_tool_use(item, kind, i)])
        elif kind in ("function_call_output", "custom_tool_call_output"):
            add("user", [_tool_result(item, i)])
        elif kind == "reasoning":
            block = unpack_thinking(item.get("encrypted_content"))
            if block is not None:
                add("assistant", [block])
        elif kind == "item_reference":
            raise ResponsesRequestError("item_reference is not supported: this gateway stores no items",
                                        f"input[{i}]")
        # Other items (hosted tool calls such as web_search_call, local_shell_call) are dropped.
    if not turns:
        raise ResponsesRequestError("input has no user or assistant content", "input")
    for turn in turns:
        if turn["role"] == "user":
            # Tool results answer the previous turn's calls and must come first.
            turn["content"].sort(key=lambda b: b.get("type") != "tool_result")
    if turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": "..."}]})
    return turns


def _content(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise ResponsesRequestError(f"input[{i}].content must be a string or a list of parts", f"input[{i}].content")
    out: list[dict[str, Any]] = []
    for part in content:
        part = mapping(part)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            if part.get("text"):
                out.append({"type": "text", "text": str(part["text"])})
        elif kind == "refusal":
            if part.get("refusal"):
                out.append({"type": "text", "text": str(part["refusal"])})
        elif kind == "input_image":
            out.extend(_image(part, i))
        elif kind == "input_file":
            out.extend(_file(part, i))
        else:
            raise ResponsesRequestError(f"input[{i}].content: part type {kind!r} is not supported",
                                        f"input[{i}].content")
    return out


def _image(part: Mapping[str, Any], i: int) -> list[dict[str, Any]]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise ResponsesRequestError(f"input[{i}]: input_image needs image_url (file_id is not supported)",
                                    f"input[{i}].content")
    m = _DATA_URL.match(url)
    if m:
        return [{"type": "image", "source": {"type": "base64", "media_type": m.group(1), "data": m.group(2)}}]
    return [{"type": "image", "source": {"type": "url", "url": url}}]


def _file(part: Mapping[str, Any], i: int) -> list[dict[str, Any]]:
    data = part.get("file_data")
    if isinstance(data, str):
        m = _DATA_URL.match(data)
        media_type, payload = (m.group(1), m.group(2)) if m else ("application/pdf", data)
        block: dict[str, Any] = {"type": "document",
                                 "source": {"type": "base64", "media_type": media_type, "data": payload}}
        if isinstance(part.get("filename"), str):
            block["title"] = part["filename"]
        return [block]
    if isinstance(part.get("file_url"), str):
        return [{"type": "document", "source": {"type": "url", "url": part["file_url"]}}]
    raise ResponsesRequestError(f"input[{i}]: input_file needs file_data or file_url (file_id is not supported)",
                                f"input[{i}].content")


def _tool_use(item: Mapping[str, Any], kind: str, i: int) -> dict[str, Any]:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ResponsesRequestError(f"input[{i}].name: field required", f"input[{i}].name")
    call_id = sanitize_id(item.get("call_id"), f"call_{i}")
    if kind == "custom_tool_call":
        args: Any = {CUSTOM_ARG: string(item.get("input"))}
    else:
        raw = item.get("arguments")
        try:
            args = orjson.loads(raw) if isinstance(raw, str) and raw.strip() else {}
        except orjson.JSONDecodeError:
            args = {"_unparsed_arguments": raw}
        if not isinstance(args, dict):
            args = {"_unparsed_arguments": raw}
    return {"type": "tool_use", "id": call_id, "name": name, "input": args}


def _tool_result(item: Mapping[str, Any], i: int) -> dict[str, Any]:
    output = item.get("output")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": sanitize_id(item.get("call_id"), f"call_{i}")}
    if isinstance(output, str):
        block["content"] = output
    elif isinstance(output, list):
        parts = _content(output, i)
        block["content"] = [p for p in parts if p["type"] in ("text", "image")] or ""
    elif output is not None:
        block["content"] = orjson.dumps(output).decode()
    return block


def _tool_names_in(turns: list[dict[str, Any]]) -> set[str]:
    return {b["name"] for t in turns for b in t["content"] if b.get("type") == "tool_use"}


# --- tools -------------------------------------------------------------------------------------


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ResponsesRequestError("tools must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        tool = mapping(tool)
        kind = tool.get("type")
        name = tool.get("name")
        if kind == "function":
            if not isinstance(name, str) or not name:
                raise ResponsesRequestError(f"tools[{i}].name: field required", f"tools[{i}].name")
            params = tool.get("parameters")
            entry: dict[str, Any] = {"name": name,
                                     "input_schema": params if isinstance(params, dict) and params
                                     else {"type": "object", "properties": {}}}
            if isinstance(tool.get("description"), str) and tool["description"]:
                entry["description"] = tool["description"]
            out.append(entry)
        elif kind == "custom" and isinstance(name, str) and name:
            out.append(_custom_tool(tool))
        # namespace, local_shell, web_search and other hosted tools are dropped (see INBOUND_CAVEATS).
    return out


def _custom_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    fmt = mapping(tool.get("format"))
    about = "The raw input for this tool, as plain text (not JSON)."
    if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        about += f" It must follow this {fmt.get('syntax') or 'grammar'} grammar:\n{fmt['definition']}"
    entry: dict[str, Any] = {
        "name": tool["name"],
        "input_schema": {"type": "object", "properties": {CUSTOM_ARG: {"type": "string", "description": about}},
                         "required": [CUSTOM_ARG]},
    }
    if isinstance(tool.get("description"), str) and tool["description"]:
        entry["description"] = tool["description"]
    return entry


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None or choice == "auto":
        out = {"type": "auto"} if parallel is False else None
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, Mapping) and choice.get("type") in ("function", "custom") and choice.get("name"):
        out = {"type": "tool", "name": str(choice["name"])}
    elif isinstance(choice, Mapping) and choice.get("type") == "allowed_tools":
        out = {"type": "any" if choice.get("mode") == "required" else "auto"}
    else:
        raise ResponsesRequestError("tool_choice must be auto, required, none or {type: function, name}",
                                    "tool_choice")
    if parallel is False and out is not None:
        out["disable_parallel_tool_use"] = True
    return out
