"""The shape of a Messages request, checked before anything goes upstream.

Only the structure is checked (which fields are objects, lists, strings or numbers), never the
values an upstream judges for itself: a malformed field gets a 400 naming it, rather than being
dropped by a translator or failing halfway through the relay.
"""

from __future__ import annotations

from typing import Any

from bytespike.errors import bad_request


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fail(field: str, what: str) -> Exception:
    return bad_request(f"{field}: {what}", param=field)


def _blocks(field: str, content: Any) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(field, "must be a string or a list of content blocks")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _fail(f"{field}.{i}", "must be a content block (an object with a string 'type')")


def check_messages_shape(req: dict[str, Any]) -> None:
    """Raise a 400 naming the first field of ``req`` whose shape a Messages request cannot have."""
    for i, m in enumerate(req["messages"]):
        if not isinstance(m, dict):
            raise _fail(f"messages.{i}", "must be an object with 'role' and 'content'")
        if not isinstance(m.get("role"), str):  # "user", "assistant"; clients send "system" too
            raise _fail(f"messages.{i}.role", "must be a string")
        if "content" not in m:
            raise _fail(f"messages.{i}.content", "field required")
        _blocks(f"messages.{i}.content", m["content"])
    if "system" in req and req["system"] is not None:
        _blocks("system", req["system"])
    tools = req.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _fail("tools", "must be a list of tools")
        for i, t in enumerate(tools):
            if not isinstance(t, dict):
                raise _fail(f"tools.{i}", "must be an object")
            if "name" in t and not isinstance(t["name"], str):
                raise _fail(f"tools.{i}.name", "must be a string")
            if "input_schema" in t and not isinstance(t["input_schema"], dict):
                raise _fail(f"tools.{i}.input_schema", "must be an object")
    stops = req.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _fail("stop_sequences", "must be a list of strings")
    for field in ("tool_choice", "thinking", "metadata"):
        if req.get(field) is not None and not isinstance(req[field], dict):
            raise _fail(field, "must be an object")
    for field in ("temperature", "top_p"):
        if req.get(field) is not None and not _number(req[field]):
            raise _fail(field, "must be a number")
    top_k = req.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool)):
        raise _fail("top_k", "must be an integer")
    mcp = req.get("mcp_servers")
    if mcp is not None and not isinstance(mcp, list):
        raise _fail("mcp_servers", "must be a list")
