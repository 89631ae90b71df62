"""GenerateContentRequest (Gemini) -> Anthropic Messages request, the hub every upstream reads."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

import orjson

from bytespike.protocols.gemini.inbound.common import GeminiRequestError, decode_thinking
from bytespike.protocols.hub import mapping, sanitize_id

_LEVEL_BUDGET: Final[Mapping[str, int]] = {"MINIMAL": 1024, "LOW": 2048, "MEDIUM": 8192, "HIGH": 16384}
_DYNAMIC_BUDGET: Final = 8192
_MIN_BUDGET: Final = 1024
_PLACEHOLDER: Final = "..."
_JSON_INSTRUCTION: Final = "Respond only with one valid JSON value, with no text before or after it."
_MODES: Final[Mapping[str, str]] = {"AUTO": "auto", "VALIDATED": "auto", "ANY": "any", "NONE": "none"}


def gemini_to_messages_request(req: Mapping[str, Any], model: str, default_max_tokens: int) -> dict[str, Any]:
    """A GenerateContentRequest body -> a Messages request for ``model`` (the model is in Gemini's URL).

    ``default_max_tokens`` is used when generationConfig sets no maxOutputTokens.
    Raises GeminiRequestError naming the field for what cannot be sent.
    """
    if not isinstance(req, Mapping):
        raise GeminiRequestError("the request body must be a JSON object")
    config = req.get("generationConfig", req.get("generation_config"))
    if config is not None and not isinstance(config, Mapping):
        raise GeminiRequestError("generationConfig must be an object", "generationConfig")
    config = mapping(config)
    system = _system(req.get("systemInstruction", req.get("system_instruction")))
    turns = _turns(req.get("contents"))
    out: dict[str, Any] = {"model": model, "max_tokens": max_output_tokens(req) or default_max_tokens}
    if system:
        out["system"] = system
    out["messages"] = turns
    tools = _tools(req.get("tools"))
    choice = _tool_choice(req.get("toolConfig", req.get("tool_config")), tools)
    if not tools:
        used = sorted({b["name"] for t in turns for b in t["content"] if b["type"] == "tool_use"})
        if used:
            # Messages needs declared tools to replay tool blocks; none offered, so none may be called.
            tools = [{"name": n, "input_schema": {"type": "object", "properties": {}}} for n in used]
            choice = {"type": "none"}
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
    _generation(config, out, system)
    return out


def max_output_tokens(req: Mapping[str, Any]) -> int | None:
    """generationConfig.maxOutputTokens when given; a bad value is a 400 naming the field."""
    config = mapping(req.get("generationConfig", req.get("generation_config")))
    value = config.get("maxOutputTokens", config.get("max_output_tokens"))
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise GeminiRequestError("generationConfig.maxOutputTokens must be a positive integer",
                                 "generationConfig.maxOutputTokens")
    return value


# --- contents --------------------------------------------------------------------------------------


def _system(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "text", "text": value}] if value else []
    if not isinstance(value, Mapping):
        raise GeminiRequestError("systemInstruction must be a Content object", "systemInstruction")
    texts = [p.get("text") for p in value.get("parts") or () if isinstance(p, Mapping)]
    return [{"type": "text", "text": t} for t in texts if isinstance(t, str) and t]


def _turns(contents: Any) -> list[dict[str, Any]]:
    """Alternating user/assistant turns, each functionResponse paired with the call it answers."""
    if not isinstance(contents, list) or not contents:
        raise GeminiRequestError("contents must be a non-empty array", "contents")
    turns: list[dict[str, Any]] = []
    ids = _CallIds()
    for i, content in enumerate(contents):
        p = f"contents[{i}]"
        if not isinstance(content, Mapping):
            raise GeminiRequestError("each content must be an object", p)
        parts = content.get("parts")
        if not isinstance(parts, list):
            raise GeminiRequestError("parts must be an array", f"{p}.parts")
        role = content.get("role") or "user"
        if role == "model":
            blocks: list[dict[str, Any]] = []
            for j, part in enumerate(parts):
                blocks.extend(_model_part(part, f"{p}.parts[{j}]", ids))
            _append(turns, "assistant", blocks)
        elif role in ("user", "function", "tool"):
            if turns and turns[-1]["role"] == "assistant":
                ids.turn_done()
            results: list[dict[str, Any]] = []
            rest: list[dict[str, Any]] = []
            for j, part in enumerate(parts):
                if isinstance(part, Mapping) and isinstance(part.get("functionResponse"), Mapping):
                    results.append(_tool_result(part["functionResponse"], f"{p}.parts[{j}].functionResponse", ids))
                else:
                    rest.extend(_user_part(part, f"{p}.parts[{j}]"))
            _append(turns, "user", results + rest)
        else:
            raise GeminiRequestError(f"unknown role {role!r}; expected user or model", f"{p}.role")
    _pair_results(turns)
    if not turns:
        raise GeminiRequestError("contents hold no text, data or function parts", "contents")
    if turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": _PLACEHOLDER}]})
    return turns


class _CallIds:
    """tool_use ids for functionCalls: Gemini's id made safe and unique in the conversation, or minted;
    and which calls of the latest model turn still await their functionResponse."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._calls: list[tuple[str, str, str]] = []  # (tool_use id, Gemini's id, name) of the current turn
        self._open: list[tuple[str, str, str]] = []

    def call(self, given: Any, name: str) -> str:
        base = sanitize_id(given, "") or f"call_{len(self._used)}"
        out, n = base, 1
        while out in self._used:
            n += 1
            out = f"{base}_{n}"
        self._used.add(out)
        self._calls.append((out, sanitize_id(given, ""), name))
        return out

    def turn_done(self) -> None:
        self._open, self._calls = self._calls, []

    def answer(self, given: Any, name: Any) -> str:
        """The call a functionResponse answers: by id, else the first open call of its name, else the next."""
        gid = sanitize_id(given, "")
        for k, (cid, original, cname) in enumerate(self._open):
            if (gid and gid in (original, cid)) or (not gid and cname == name):
                del self._open[k]
                return cid
        if not gid and self._open:
            return self._open.pop(0)[0]
        return gid or f"unanswered_{sanitize_id(name, 'call')}"


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _model_part(part: Any, p: str, ids: _CallIds) -> list[dict[str, Any]]:
    if not isinstance(part, Mapping):
        raise GeminiRequestError("each part must be an object", p)
    out: list[dict[str, Any]] = decode_thinking(part.get("thoughtSignature", part.get("thought_signature")))
    if part.get("thought"):
        return out  # thought summaries are for display; the signature carries the blocks
    call = part.get("functionCall", part.get("function_call"))
    text = part.get("text")
    if isinstance(call, Mapping):
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise GeminiRequestError("functionCall.name is required", f"{p}.functionCall.name")
        args = call.get("args")
        out.append({"type": "tool_use", "id": ids.call(call.get("id"), name), "name": name,
                    "input": args if isinstance(args, dict) else {}})
    elif isinstance(text, str) and text:
        out.append({"type": "text", "text": text})
    return out


def _user_part(part: Any, p: str) -> list[dict[str, Any]]:
    if not isinstance(part, Mapping):
        raise GeminiRequestError("each part must be an object", p)
    if part.get("thought"):
        return []
    text = part.get("text")
    if isinstance(text, str):
        return [{"type": "text", "text": text}] if text else []
    inline = part.get("inlineData", part.get("inline_data"))
    if isinstance(inline, Mapping):
        return [_inline(inline, f"{p}.inlineData")]
    file = part.get("fileData", part.get("file_data"))
    if isinstance(file, Mapping):
        return [_file(file, f"{p}.fileData")]
    return []


def _inline(data: Mapping[str, Any], p: str) -> dict[str, Any]:
    mime = str(data.get("mimeType", data.get("mime_type")) or "")
    payload = data.get("data")
    if not isinstance(payload, str):
        raise GeminiRequestError("inlineData.data must be a base64 string", f"{p}.data")
    if mime.startswith("image/"):
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": _std_b64(payload)}}
    if mime == "application/pdf":
        return {"type": "document", "source": {"type": "base64", "media_type": mime, "data": _std_b64(payload)}}
    if mime.startswith("text/"):
        try:
            text = base64.b64decode(_std_b64(payload)).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            raise GeminiRequestError("inlineData.data is not valid base64", f"{p}.data") from None
        return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    return {"type": "text", "text": f"[attachment of type {mime or 'unknown'} omitted: not supported by this model]"}


def _std_b64(data: str) -> str:
    """Standard base64 with padding: SDKs may send the URL-safe alphabet, Messages takes the standard one."""
    data = data.replace("-", "+").replace("_", "/").strip()
    return data + "=" * (-len(data) % 4)


def _file(data: Mapping[str, Any], p: str) -> dict[str, Any]:
    mime = str(data.get("mimeType", data.get("mime_type")) or "")
    uri = data.get("fileUri", data.get("file_uri"))
    if not isinstance(uri, str) or not uri:
        raise GeminiRequestError("fileData.fileUri is required", f"{p}.fileUri")
    if mime.startswith("image/"):
        return {"type": "image", "source": {"type": "url", "url": uri}}
    if mime == "application/pdf" or uri.lower().split("?", 1)[0].endswith(".pdf"):
        return {"type": "document", "source": {"type": "url", "url": uri}}
    return {"type": "text", "text": f"[file {uri} ({mime or 'unknown type'})]"}


def _tool_result(resp: Mapping[str, Any], p: str, ids: _CallIds) -> dict[str, Any]:
    call_id = ids.answer(resp.get("id"), resp.get("name"))
    response = resp.get("response")
    is_error = False
    if isinstance(response, Mapping) and set(response) <= {"output", "error"} and response:
        is_error = "error" in response and "output" not in response
        value = response.get("output", response.get("error"))
    else:
        value = response
    text = value if isinstance(value, str) else orjson.dumps(value if value is not None else {}).decode()
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for j, part in enumerate(resp.get("parts") or ()):
        content.extend(b for b in _user_part(part, f"{p}.parts[{j}]") if b["type"] in ("text", "image"))
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": content or text}
    if is_error:
        block["is_error"] = True
    return block


def _pair_results(turns: list[dict[str, Any]]) -> None:
    """Messages wants each tool_use answered in the next user turn: unanswered calls get a placeholder,
    results answering no call of the previous turn become text."""
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        ids = [b["id"] for b in turn["content"] if b["type"] == "tool_use"]
        if not ids:
            continue
        if i + 1 == len(turns):
            continue  # the model's pending calls: the client sends the results next time
        nxt = turns[i + 1]
        answered = {b["tool_use_id"] for b in nxt["content"] if b["type"] == "tool_result"}
        missing = [{"type": "tool_result", "tool_use_id": cid, "content": "(no result)", "is_error": True}
                   for cid in ids if cid not in answered]
        nxt["content"][:0] = missing
    for i, turn in enumerate(turns):
        if turn["role"] != "user":
            continue
        prev = turns[i - 1] if i else None
        called = {b["id"] for b in prev["content"] if b["type"] == "tool_use"} if prev else set()
        results: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []
        for b in turn["content"]:
            if b["type"] != "tool_result":
                rest.append(b)
            elif b["tool_use_id"] in called:
                results.append(b)
            else:
                rest.append({"type": "text", "text": f"[result of tool call {b['tool_use_id']}]\n{_text_of(b)}"})
        turn["content"] = results + rest


def _text_of(block: Mapping[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or () if b.get("type") == "text")


# --- tools and settings ----------------------------------------------------------------------------


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise GeminiRequestError("tools must be an array", "tools")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        decls = mapping(tool).get("functionDeclarations", mapping(tool).get("function_declarations"))
        for j, decl in enumerate(decls or ()):
            p = f"tools[{i}].functionDeclarations[{j}]"
            if not isinstance(decl, Mapping) or not isinstance(decl.get("name"), str) or not decl["name"]:
                raise GeminiRequestError("a function declaration needs a name", f"{p}.name")
            schema = decl.get("parametersJsonSchema", decl.get("parameters_json_schema"))
            schema = _json_schema(decl.get("parameters") if schema is None else schema)
            if not isinstance(schema, Mapping) or schema.get("type") not in ("object", None):
                schema = {"type": "object", "properties": {}}
            entry: dict[str, Any] = {"name": decl["name"], "input_schema": {"type": "object", **schema}}
            if isinstance(decl.get("description"), str) and decl["description"]:
                entry["description"] = decl["description"]
            out.append(entry)
    return out


def _json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI Schema (upper-case types, ``nullable``) -> JSON Schema; JSON Schema stays as it is."""
    if isinstance(schema, list):
        return [_json_schema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key in ("properties", "$defs", "definitions") and isinstance(value, Mapping):
            out[key] = {k: _json_schema(v) for k, v in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
            out[key] = _json_schema(value)
        elif key in ("nullable", "propertyOrdering"):
            continue
        else:
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _tool_choice(config: Any, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    fcc = mapping(mapping(config).get("functionCallingConfig", mapping(config).get("function_calling_config")))
    mode = fcc.get("mode")
    if mode is None:
        return None
    kind = _MODES.get(str(mode).upper())
    if kind is None:
        raise GeminiRequestError("functionCallingConfig.mode must be AUTO, ANY, NONE or VALIDATED",
                                 "toolConfig.functionCallingConfig.mode")
    names = fcc.get("allowedFunctionNames", fcc.get("allowed_function_names"))
    if kind == "any" and isinstance(names, list) and len(names) == 1 and isinstance(names[0], str):
        if names[0] in {t["name"] for t in tools}:
            return {"type": "tool", "name": names[0]}
    return {"type": kind}


def _number(config: Mapping[str, Any], field: str, *alts: str) -> float | None:
    for name in (field, *alts):
        value = config.get(name)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise GeminiRequestError(f"generationConfig.{field} must be a number", f"generationConfig.{field}")
        return value
    return None


def _generation(config: Mapping[str, Any], out: dict[str, Any], system: list[dict[str, Any]]) -> None:
    count = config.get("candidateCount", config.get("candidate_count"))
    if isinstance(count, int) and not isinstance(count, bool) and count > 1:
        raise GeminiRequestError("candidateCount > 1 is not supported for this model; send one request per "
                                 "candidate", "generationConfig.candidateCount")
    temperature = _number(config, "temperature")
    top_p = _number(config, "topP", "top_p")
    top_k = _number(config, "topK", "top_k")
    if temperature is not None:
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)
    elif top_p is not None:
        out["top_p"] = top_p  # newer Claude models refuse temperature and top_p together
    if top_k is not None and top_k >= 1:
        out["top_k"] = int(top_k)
    stops = config.get("stopSequences", config.get("stop_sequences"))
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise GeminiRequestError("generationConfig.stopSequences must be an array of strings",
                                     "generationConfig.stopSequences")
        if any(s.strip() for s in stops):
            out["stop_sequences"] = [s for s in stops if s.strip()]
    _response_format(config, out, system)
    _thinking(mapping(config.get("thinkingConfig", config.get("thinking_config"))), out)


def _response_format(config: Mapping[str, Any], out: dict[str, Any], system: list[dict[str, Any]]) -> None:
    schema = config.get("responseJsonSchema", config.get("response_json_schema"))
    if schema is None:
        schema = config.get("responseSchema", config.get("response_schema"))
    schema = _json_schema(schema)  # Gemini CLI sends upper-case types even in responseJsonSchema
    if isinstance(schema, Mapping):
        out["output_config"] = {"format": {"type": "json_schema", "schema": dict(schema)}}
    elif config.get("responseMimeType", config.get("response_mime_type")) == "application/json":
        system.append({"type": "text", "text": _JSON_INSTRUCTION})
        out["system"] = system


def _thinking(config: Mapping[str, Any], out: dict[str, Any]) -> None:
    """thinkingConfig -> an enabled thinking budget below max_tokens, when the conversation can carry it."""
    if not config:
        return
    budget = config.get("thinkingBudget", config.get("thinking_budget"))
    level = config.get("thinkingLevel", config.get("thinking_level"))
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < -1):
        raise GeminiRequestError("thinkingConfig.thinkingBudget must be an integer >= -1",
                                 "generationConfig.thinkingConfig.thinkingBudget")
    if isinstance(budget, int):
        if budget == 0:
            return
        tokens = _DYNAMIC_BUDGET if budget == -1 else max(budget, _MIN_BUDGET)
    elif isinstance(level, str) and level.upper() in _LEVEL_BUDGET:
        tokens = _LEVEL_BUDGET[level.upper()]
    elif level is not None:
        raise GeminiRequestError("thinkingConfig.thinkingLevel must be MINIMAL, LOW, MEDIUM or HIGH",
                                 "generationConfig.thinkingConfig.thinkingLevel")
    elif config.get("includeThoughts", config.get("include_thoughts")):
        tokens = _DYNAMIC_BUDGET
    else:
        return
    if mapping(out.get("tool_choice")).get("type") in ("any", "tool") or _continues_unsigned_turn(out["messages"]):
        return
    if out["max_tokens"] <= _MIN_BUDGET:
        return
    out["thinking"] = {"type": "enabled", "budget_tokens": min(tokens, out["max_tokens"] - 1)}
    for field in ("temperature", "top_p", "top_k"):
        out.pop(field, None)


def _continues_unsigned_turn(turns: list[dict[str, Any]]) -> bool:
    """With thinking on, an assistant turn being continued (a prefill, or a tool loop in progress) must
    start with its signed thinking block; a history without one rules thinking out."""
    last = turns[-1]
    if last["role"] == "assistant":
        turn: dict[str, Any] | None = last
    elif any(b["type"] == "tool_result" for b in last["content"]) and len(turns) > 1:
        turn = turns[-2]
    else:
        return False
    return not turn or not turn["content"] or turn["content"][0]["type"] not in ("thinking", "redacted_thinking")
