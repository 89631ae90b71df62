"""The shape of a Chat Completions request, checked before anything goes upstream.

Structure only (objects, lists, strings, numbers), plus the two fields money depends on: ``n``
(one choice: the hold covers one) and the output cap (``max_tokens`` and
``max_completion_tokens`` may both be given only if they agree, so every server reads the same).
"""

from __future__ import annotations

from typing import Any

from bytespike.errors import bad_request


def _fail(field: str, what: str) -> Exception:
    return bad_request(f"{field}: {what}", param=field)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_chat_shape(req: dict[str, Any]) -> None:
    """Raise a 400 naming the first field of ``req`` a Chat Completions request cannot have."""
    for i, m in enumerate(req["messages"]):
        if not isinstance(m, dict):
            raise _fail(f"messages.{i}", "must be an object with 'role'")
        if not isinstance(m.get("role"), str):
            raise _fail(f"messages.{i}.role", "must be a string")
        content = m.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _fail(f"messages.{i}.content", "must be a string or a list of content parts")
        if isinstance(content, list) and not all(isinstance(p, dict) for p in content):
            raise _fail(f"messages.{i}.content", "content parts must be objects")
        calls = m.get("tool_calls")
        if calls is not None and (not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls)):
            raise _fail(f"messages.{i}.tool_calls", "must be a list of objects")
    tools = req.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise _fail("tools", "must be a list of tool objects")
    choice = req.get("tool_choice")
    if choice is not None and not isinstance(choice, str | dict):
        raise _fail("tool_choice", "must be a string or an object")
    stop = req.get("stop")
    if stop is not None and not isinstance(stop, str) and (
            not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise _fail("stop", "must be a string or a list of strings")
    for field in ("response_format", "metadata", "web_search_options", "prediction", "audio"):
        if req.get(field) is not None and not isinstance(req[field], dict):
            raise _fail(field, "must be an object")
    for field in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        if req.get(field) is not None and not _number(req[field]):
            raise _fail(field, "must be a number")
    for field in ("reasoning_effort", "user", "safety_identifier", "service_tier", "verbosity"):
        if req.get(field) is not None and not isinstance(req[field], str):
            raise _fail(field, "must be a string")
    for field in ("parallel_tool_calls", "logprobs", "store"):
        if req.get(field) is not None and not isinstance(req[field], bool):
            raise _fail(field, "must be a boolean")
    for field in ("seed", "top_k", "top_logprobs"):
        if req.get(field) is not None and (not isinstance(req[field], int) or isinstance(req[field], bool)):
            raise _fail(field, "must be an integer")
    modalities = req.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or not all(isinstance(x, str) for x in modalities)):
        raise _fail("modalities", "must be a list of strings")
    call = req.get("function_call")
    if call is not None and not isinstance(call, str | dict):
        raise _fail("function_call", "must be a string or an object")
    n = req.get("n")
    if n is not None and n != 1:
        raise _fail("n", "only one choice per request is offered (n must be 1)")
    mt, mct = req.get("max_tokens"), req.get("max_completion_tokens")
    if mt is not None and mct is not None and mt != mct:
        raise bad_request("max_tokens and max_completion_tokens disagree; send one of them",
                          param="max_completion_tokens")
