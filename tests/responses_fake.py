"""A strict fake of OpenAI's Responses API for tests: it checks every request against OpenAI's
documented rules (answering 400 in OpenAI's error shape, as OpenAI does) and answers in the wire
format of the recordings (``tests/fixtures/recorded/.../openai-responses*``).

Answers: a reasoning item first for reasoning models (summary when asked, encrypted_content when
``include`` asks, verified when it comes back), then a call of the first (or forced) tool when
tools are offered and the last input item is not a tool output, else a text answer.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from fakeupstream import Answer, Received

TEXT = "Hello from the Responses upstream."
AFTER_TOOL = "The tool said: {output}"
SUMMARY = "Thinking it over briefly."

_KNOWN = {
    "background", "conversation", "include", "input", "instructions", "max_output_tokens", "max_tool_calls",
    "metadata", "model", "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key",
    "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier", "store", "stream",
    "stream_options", "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
    "client_metadata",
}
_MOVED = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
          "reasoning_effort": "reasoning.effort", "messages": "input", "response_format": "text.format"}
_INCLUDE = {"reasoning.encrypted_content", "message.output_text.logprobs", "file_search_call.results",
            "web_search_call.action.sources", "computer_call_output.output.image_url",
            "code_interpreter_call.outputs", "message.input_image.image_url"}
_HOSTED = {"custom", "namespace", "web_search", "web_search_preview", "local_shell", "file_search", "mcp",
           "computer_use_preview", "code_interpreter", "image_generation", "shell", "apply_patch"}
_EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh"}
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PARTS = {"assistant": {"output_text", "refusal"},
          "user": {"input_text", "input_image", "input_file"},
          "system": {"input_text"}, "developer": {"input_text"}}


class Rejected(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


def reasoning_model(model: str) -> bool:
    return bool(re.match(r"^(gpt-5|o1|o3|o4)", model))


def encrypted_for(response_id: str) -> str:
    """The encrypted_content this fake issues for a response: it verifies it when it comes back."""
    return "gAAAA" + hashlib.sha256(b"fake-secret:" + response_id.encode()).hexdigest()


def _issued(text: str, rid: str) -> bool:
    return text == encrypted_for(rid)


def validate(body: bytes, headers: dict[str, str] | None = None, issued: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The parsed request, or Rejected with OpenAI's message for the first rule it breaks.
    ``issued``: encrypted reasoning OpenAI issued elsewhere (recordings), accepted back verbatim."""
    if headers is not None and not headers.get("authorization", "").startswith("Bearer "):
        raise Rejected("You didn't provide an API key.", status=401)
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected("We could not parse the JSON body of your request.") from None
    if not isinstance(req, dict):
        raise Rejected("The request body must be a JSON object.")
    for key in req:
        if key in _MOVED:
            raise Rejected(f"Unsupported parameter: '{key}'. In the Responses API, this parameter has moved to "
                           f"'{_MOVED[key]}'.", key)
        if key not in _KNOWN:
            raise Rejected(f"Unknown parameter: '{key}'.", key)
    model = req.get("model")
    if not isinstance(model, str) or not model:
        raise Rejected("Missing required parameter: 'model'.", "model")
    if "stream" in req and not isinstance(req["stream"], bool):
        raise Rejected("Invalid type for 'stream': expected a boolean.", "stream")
    mot = req.get("max_output_tokens")
    if mot is not None and (not isinstance(mot, int) or isinstance(mot, bool) or mot < 16):
        raise Rejected("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.",
                       "max_output_tokens")
    if req.get("previous_response_id"):
        raise Rejected(f"Previous response with id '{req['previous_response_id']}' not found.",
                       "previous_response_id", 404)
    for key in ("temperature", "top_p"):
        if req.get(key) is not None and reasoning_model(model) and req[key] != 1:
            raise Rejected(f"Unsupported parameter: '{key}' is not supported with this model.", key)
    reasoning = req.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise Rejected("Invalid type for 'reasoning': expected an object.", "reasoning")
        if not reasoning_model(model):
            raise Rejected("Unsupported parameter: 'reasoning.effort' is not supported with this model.",
                           "reasoning.effort")
        if reasoning.get("effort") is not None and reasoning["effort"] not in _EFFORTS:
            raise Rejected(f"Invalid value: '{reasoning['effort']}'. Supported values are: 'none', 'minimal', "
                           "'low', 'medium', 'high' and 'xhigh'.", "reasoning.effort")
        if reasoning.get("summary") not in (None, "auto", "concise", "detailed"):
            raise Rejected("Invalid value for 'reasoning.summary'.", "reasoning.summary")
    for value in req.get("include") or ():
        if value not in _INCLUDE:
            raise Rejected(f"Invalid value: '{value}'.", "include")
    tools = _tools(req.get("tools"))
    _tool_choice(req.get("tool_choice"), tools)
    _input(req, issued)
    return req


def _tools(tools: Any) -> dict[str, dict[str, Any]]:
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise Rejected("Invalid type for 'tools': expected an array.", "tools")
    out = {}
    for i, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type") in _HOSTED:
            continue
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise Rejected(f"Invalid value for 'tools[{i}].type'.", f"tools[{i}].type")
        if "function" in tool:
            raise Rejected(f"Unknown parameter: 'tools[{i}].function'.", f"tools[{i}].function")
        name = tool.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise Rejected(f"Invalid 'tools[{i}].name': string does not match pattern.", f"tools[{i}].name")
        params = tool.get("parameters")
        if not isinstance(params, dict) or params.get("type") != "object":
            raise Rejected(f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"'.",
                           f"tools[{i}].parameters")
        strict = tool.get("strict", True)
        if not isinstance(strict, bool):
            raise Rejected(f"Invalid type for 'tools[{i}].strict'.", f"tools[{i}].strict")
        if strict:
            _strict_schema(params, name, f"tools[{i}].parameters")
        out[name] = tool
    return out


def _strict_schema(schema: dict[str, Any], name: str, where: str) -> None:
    if schema.get("type") == "object":
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            raise Rejected(f"Invalid schema for function '{name}': In context=(), 'additionalProperties' is "
                           "required to be supplied and to be false.", where)
        if set(schema.get("required") or ()) != set(props):
            raise Rejected(f"Invalid schema for function '{name}': In context=(), 'required' is required to be "
                           "supplied and to be an array including every key in properties.", where)
        for sub in props.values():
            if isinstance(sub, dict):
                _strict_schema(sub, name, where)


def _tool_choice(choice: Any, tools: dict[str, Any]) -> None:
    if choice is None or choice in ("auto", "none", "required"):
        if choice == "required" and not tools:
            raise Rejected("Tool choice 'required' must be specified with 'tools' parameter.", "tool_choice")
        return
    if isinstance(choice, dict) and choice.get("type") == "function":
        if choice.get("name") not in tools:
            raise Rejected(f"Tool choice '{choice.get('name')}' not found in 'tools' parameter.", "tool_choice")
        return
    raise Rejected("Invalid value for 'tool_choice'.", "tool_choice")


def _input(req: dict[str, Any], issued: frozenset[str]) -> None:
    items = req.get("input")
    if isinstance(items, str):
        return
    if not isinstance(items, list):
        raise Rejected("Missing required parameter: 'input'.", "input")
    calls: dict[str, bool] = {}
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise Rejected(f"Invalid type for '{where}': expected an object.", where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _PARTS:
                raise Rejected(f"Invalid value: '{role}'. Supported values are: 'assistant', 'system', "
                               "'developer', and 'user'.", f"{where}.role")
            content = item.get("content")
            if isinstance(content, list):
                for j, part in enumerate(content):
                    if not isinstance(part, dict) or part.get("type") not in _PARTS[role]:
                        kind_j = part.get("type") if isinstance(part, dict) else None
                        raise Rejected(f"Invalid value: '{kind_j}'. Supported values for role {role} are: "
                                       f"{sorted(_PARTS[role])}.", f"{where}.content[{j}]")
                    if part["type"] == "input_image" and not (part.get("image_url") or part.get("file_id")):
                        raise Rejected("Missing required parameter: image_url.", f"{where}.content[{j}]")
            elif not isinstance(content, str):
                raise Rejected(f"Missing required parameter: '{where}.content'.", f"{where}.content")
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str) or not item[key] and key != "arguments":
                    raise Rejected(f"Missing required parameter: '{where}.{key}'.", f"{where}.{key}")
            calls[item["call_id"]] = False
        elif kind == "function_call_output":
            cid = item.get("call_id")
            if cid not in calls:
                raise Rejected(f"No tool call found for function call output with call_id {cid}.", where)
            calls[cid] = True
            if not isinstance(item.get("output"), (str, list)):
                raise Rejected(f"Missing required parameter: '{where}.output'.", f"{where}.output")
        elif kind == "reasoning":
            rid = item.get("id")
            enc = item.get("encrypted_content")
            if not isinstance(rid, str) or not isinstance(item.get("summary"), list):
                raise Rejected(f"Missing required parameter: '{where}.summary'.", where)
            if not enc:
                raise Rejected(f"Item with id '{rid}' not found. Items are not persisted when `store` is set to "
                               "false. Try again with `store` set to true, or remove this item from your input.",
                               where, 404)
            if not _issued(enc, rid.replace("rs_", "resp_", 1)) and enc not in issued:
                raise Rejected(f"The encrypted content for item {rid} could not be verified.", where)
            if i + 1 >= len(items):
                raise Rejected(f"Item '{rid}' of type 'reasoning' was provided without its required following item.",
                               where)
        else:
            raise Rejected(f"Invalid value: '{kind}'.", f"{where}.type")
    for cid, answered in calls.items():
        if not answered:
            raise Rejected(f"No tool output found for function call {cid}.", "input")


# --- answers -----------------------------------------------------------------------------------


def _value(schema: Any) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else "string"
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(kind, "Paris")


def answer_for(req: dict[str, Any], seq: int) -> dict[str, Any]:
    """The whole Response object this fake gives ``req`` (``seq`` makes ids unique)."""
    model = req["model"]
    rid = f"resp_{seq:04d}" + hashlib.sha256(orjson.dumps(req)).hexdigest()[:20]
    output: list[dict[str, Any]] = []
    reasoning = req.get("reasoning") or {}
    thinks = reasoning_model(model) and reasoning.get("effort") != "none"
    if thinks:
        item: dict[str, Any] = {"id": rid.replace("resp_", "rs_", 1), "type": "reasoning",
                                "summary": [{"type": "summary_text", "text": SUMMARY}] if reasoning.get("summary")
                                else []}
        if "reasoning.encrypted_content" in (req.get("include") or ()):
            item["encrypted_content"] = encrypted_for(rid)
        output.append(item)
    items = req["input"] if isinstance(req["input"], list) else []
    last = items[-1] if items else {}
    tools = req.get("tools") or []
    choice = req.get("tool_choice")
    if tools and last.get("type") != "function_call_output" and choice != "none":
        tool = tools[0]
        if isinstance(choice, dict):
            tool = next(t for t in tools if t["name"] == choice["name"])
        params = tool.get("parameters") or {}
        args = {k: _value(v) for k, v in (params.get("properties") or {}).items() if k in (params.get("required") or ())}
        output.append({"id": rid.replace("resp_", "fc_", 1), "type": "function_call", "status": "completed",
                       "arguments": orjson.dumps(args).decode(), "call_id": "call_" + rid[-12:],
                       "name": tool["name"]})
    else:
        text = AFTER_TOOL.format(output=last.get("output")) if last.get("type") == "function_call_output" else TEXT
        output.append({"id": rid.replace("resp_", "msg_", 1), "type": "message", "status": "completed",
                       "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
                       "phase": "final_answer", "role": "assistant"})
    n_in = max(1, len(orjson.dumps(req)) // 4)
    cached = n_in // 2 if req.get("prompt_cache_key") else 0
    n_reason = 7 if thinks else 0
    n_out = 5 + n_reason
    return {"id": rid, "object": "response", "created_at": 1779557576, "status": "completed", "background": False,
            "error": None, "incomplete_details": None, "instructions": req.get("instructions"),
            "max_output_tokens": req.get("max_output_tokens"), "model": model + "-2026-04-23", "output": output,
            "parallel_tool_calls": req.get("parallel_tool_calls", True), "previous_response_id": None,
            "store": req.get("store", True), "temperature": 1.0, "tool_choice": choice or "auto", "tools": tools,
            "top_p": 0.98, "truncation": "disabled", "metadata": {},
            "usage": {"input_tokens": n_in, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
                      "output_tokens": n_out, "output_tokens_details": {"reasoning_tokens": n_reason},
                      "total_tokens": n_in + n_out}}


def stream_events(resp: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream events OpenAI sends for ``resp``, in the recordings' order and shape."""
    start = {**resp, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": start},
                                    {"type": "response.in_progress", "response": start}]
    for index, item in enumerate(resp["output"]):
        kind = item["type"]
        if kind == "reasoning":
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "summary": []}})
            for s, part in enumerate(item["summary"]):
                common = {"item_id": item["id"], "output_index": index, "summary_index": s}
                events += [{"type": "response.reasoning_summary_part.added", **common,
                            "part": {"type": "summary_text", "text": ""}}]
                for piece in re.findall(r"\S+\s*", part["text"]):
                    events.append({"type": "response.reasoning_summary_text.delta", **common, "delta": piece,
                                   "obfuscation": "xyz"})
                events += [{"type": "response.reasoning_summary_text.done", **common, "text": part["text"]},
                           {"type": "response.reasoning_summary_part.done", **common, "part": part}]
        elif kind == "function_call":
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "status": "in_progress", "arguments": ""}})
            args = item["arguments"]
            for i in range(0, len(args), 6):
                events.append({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                               "output_index": index, "delta": args[i:i + 6], "obfuscation": "ab"})
            events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                           "output_index": index, "arguments": args})
        else:
            text = item["content"][0]["text"]
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events += [{"type": "response.output_item.added", "output_index": index,
                        "item": {**item, "status": "in_progress", "content": []}},
                       {"type": "response.content_part.added", **common, "part": part}]
            for piece in re.findall(r"\S+\s*", text):
                events.append({"type": "response.output_text.delta", **common, "delta": piece, "logprobs": [],
                               "obfuscation": "q"})
            events += [{"type": "response.output_text.done", **common, "text": text, "logprobs": []},
                       {"type": "response.content_part.done", **common, "part": {**part, "text": text}}]
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed", "response": resp})
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]


def sse(events: list[dict[str, Any]]) -> list[bytes]:
    return [b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events]


class StrictResponses:
    """A FakeUpstream handler for ``…/responses`` paths; other paths fall through (None)."""

    def __init__(self) -> None:
        self.seq = 0
        self.rejected: list[str] = []

    def __call__(self, got: Received) -> Answer | None:
        if not got.path.endswith("/responses"):
            return None
        try:
            req = validate(got.body, got.headers)
        except Rejected as exc:
            self.rejected.append(exc.message)
            kind = "invalid_request_error" if exc.status != 401 else "invalid_request_error"
            return Answer(status=exc.status, body=orjson.dumps(
                {"error": {"message": exc.message, "type": kind, "param": exc.param,
                           "code": "invalid_api_key" if exc.status == 401 else None}}))
        self.seq += 1
        resp = answer_for(req, self.seq)
        if req.get("stream"):
            return Answer(chunks=sse(stream_events(resp)), content_type="text/event-stream; charset=utf-8")
        return Answer(body=orjson.dumps(resp))
