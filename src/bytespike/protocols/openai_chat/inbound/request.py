"""Chat Completions request -> Anthropic Messages request."""

from __future__ import annotations

from typing import Any, Final

from bytespike.protocols.openai_chat.inbound.common import ChatRequestError
from bytespike.protocols.openai_chat.inbound.conversation import _convert_messages, _tool_names_in
from bytespike.protocols.openai_chat.inbound.tools import _empty_schema, _tool_choice, _tools

DEFAULT_MAX_TOKENS: Final = 4096
"""Messages requires ``max_tokens``; Chat makes it optional. 4096 is used when the client sets none."""

_EFFORT_BUDGET: Final = {"low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
_EFFORT_OFF: Final = frozenset({"none", "minimal"})
_JSON_OBJECT_INSTRUCTION: Final = "Respond only with one valid JSON object, with no text before or after it."


def chat_to_messages_request(req: dict, model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    """Chat Completions request -> Anthropic Messages request for ``model``.

    Defaults and approximations: ``max_tokens`` is ``default_max_tokens`` (4096 unless the caller
    passes the model's own cap) when the client sets neither ``max_completion_tokens`` nor
    ``max_tokens``, and is raised above a thinking budget when reasoning_effort asks for one: the
    returned value is the effective cap, the one admission holds for; temperature is clamped into Anthropic's
    [0, 1] (not rescaled); ``response_format: json_object`` is asked for with a system instruction.
    Raises ChatRequestError for what cannot be sent (see CAVEATS for what is dropped instead).
    """
    if not isinstance(req, dict):
        raise ChatRequestError("the request body must be a JSON object")
    _reject_unsupported(req)
    system, turns = _convert_messages(req.get("messages"))
    tools = _tools(req)
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(req, default_max_tokens)}

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


def _max_tokens(req: dict, default: int) -> int:
    for field in ("max_completion_tokens", "max_tokens"):
        value = req.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ChatRequestError(f"{field} must be a positive integer", field)
        return value
    return default


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
