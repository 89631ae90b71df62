"""Chat tools, functions and tool_choice -> Messages tools and tool_choice."""

from __future__ import annotations

from typing import Any

from bytespike.protocols.openai_chat.inbound.common import ChatRequestError


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
