"""Anthropic Messages <-> Gemini generateContent / streamGenerateContent (alt=sse).

Thought signatures through an Anthropic client
----------------------------------------------
Gemini puts an opaque ``thoughtSignature`` on response parts (on the first functionCall of a
turn, or on a text part, or on a trailing empty text part) and wants it back on the same part in
the next request. An Anthropic client keeps only text, tool_use ids and thinking signatures, so
the gateway carries each Gemini signature in a ``thinking`` block placed right before the block
made from the signed part:

* signed non-thought part -> thinking block (the open thought summary, else an empty one) whose
  signature is ``bytespike:1:gemini-next:<thoughtSignature>``; on the next request the signature
  goes on the part built from the next block of that assistant message (a trailing one becomes
  ``{"text": "", "thoughtSignature": ...}``, as Gemini sent it);
* signed thought part -> its thinking block is signed ``bytespike:1:gemini-thought:<sig>`` and goes
  back as ``{"text": <summary>, "thought": true, "thoughtSignature": <sig>}``;
* unsigned thought summaries are signed ``bytespike:1:gemini-thought:`` and not sent back.

Thinking blocks with any other signature (Anthropic's own, other vendors') are dropped. A model
turn whose first functionCall still has no signature gets Gemini's documented dummy
``skip_thought_signature_validator`` (history from another model, or a client that lost it).

Gemini 2.5 functionCalls carry no id: ids are minted as ``toolu_<responseId>_<n>`` and sent back
as functionCall.id / functionResponse.id, which Gemini accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from bytespike.protocols.anthropic.builder import MessageStreamBuilder
from bytespike.protocols.base import JsonEventSource
from bytespike.protocols.gemini.schema import to_gemini_schema
from bytespike.protocols.hub import (
    SIG_GEMINI_NEXT,
    SIG_GEMINI_THOUGHT,
    Events,
    blocks_of,
    empty_usage,
    gateway_signature,
    mapping,
    new_message_id,
    read_gateway_signature,
    requested_effort,
    sanitize_id,
    snap_effort,
    stop_from_gemini,
    string,
    system_texts,
    tool_name_map,
    upstream_tool_name,
    usage_from_gemini,
)

DUMMY_SIGNATURE: Final = "skip_thought_signature_validator"

CAVEATS: Final[tuple[str, ...]] = (
    "Tool input schemas are reduced to Gemini's schema subset (additionalProperties, $ref, const, "
    "exclusive bounds, non-string enums and similar are rewritten or dropped).",
    "disable_parallel_tool_use has no Gemini equivalent and is ignored.",
    "Which stop sequence matched is not reported: stop_reason is end_turn and stop_sequence null.",
    "At most 5 stop_sequences are sent; the rest are dropped.",
    "System messages in the middle of the conversation are appended to the system instruction.",
    "tool_result is_error is sent as functionResponse.response.error.",
    "Images in tool_result go in functionResponse.parts where the model supports it, else as "
    "image parts right after the function responses.",
    "Image and document URLs are passed as fileData URIs, which Gemini fetches only for URLs it can reach.",
    "Thinking blocks signed by Anthropic or another vendor are dropped; redacted_thinking is dropped.",
    "Gemini thought signatures travel in thinking blocks signed 'bytespike:1:gemini-...'; keep them "
    "in the history for multi-step tool use.",
    "A signature Gemini sends after the answer text has begun (on a trailing empty part) is not "
    "returned: a thinking block after the text would hide the answer from clients that show the "
    "last text block; Gemini requires signatures back only on function calls.",
    "thinking maps to thinkingBudget (Gemini 2.5) or thinkingLevel (Gemini 3); thought summaries "
    "come back as thinking blocks.",
    "cache_control and metadata.user_id are dropped (Gemini caches implicitly).",
    "The x-anthropic-billing-header attribution line Claude Code puts first in the system prompt is "
    "not sent (it would defeat prompt caching).",
    "Server tools (web search, code execution, ...) and their result blocks are dropped.",
    "Gemini output parts other than text, thoughts and function calls (images, code execution) are dropped.",
)


@dataclass(frozen=True)
class GeminiDialect:
    """How one Gemini model family takes its settings."""

    thinking: Literal["budget", "level"] = "budget"
    """"budget" = thinkingBudget (Gemini 2.5), "level" = thinkingLevel (Gemini 3)."""
    budget_range: tuple[int, int] = (1, 24576)
    """Smallest and largest thinkingBudget when thinking is on."""
    off_budget: int | None = None
    """thinkingBudget sent when the client asks for no thinking (0 on 2.5 Flash, the minimum where
    thinking cannot be turned off); None leaves the model's default."""
    off_level: str | None = None
    """thinkingLevel sent when the client asks for no thinking (Gemini 3 cannot turn it off)."""
    levels: tuple[str, ...] = ("low", "high")
    """thinkingLevel values the model accepts, on the common effort scale."""
    function_response_parts: bool = False
    """Images may go inside functionResponse.parts (Gemini 3)."""
    dummy_signature: bool = True
    max_stop: int = 5
    max_output_tokens: int | None = None
    tool_name_limit: int = 128


GENERIC: Final = GeminiDialect()
"""Safe for any model: no thinkingConfig unless the client asks for thinking."""
GEMINI_25_FLASH: Final = GeminiDialect(off_budget=0)
GEMINI_25_PRO: Final = GeminiDialect(budget_range=(128, 32768), off_budget=128)
GEMINI_3: Final = GeminiDialect(thinking="level", off_level="low", function_response_parts=True)

_EFFORT_BUDGET: Final[Mapping[str, int]] = {
    "minimal": 512,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 32768,
}


def gemini_tool_names(req: Mapping[str, Any], dialect: GeminiDialect = GENERIC) -> dict[str, str]:
    """Upstream function name -> client tool name for names changed on the way up."""
    return tool_name_map(req, dialect.tool_name_limit, lead_letter=True)


def _fn_name(name: Any, dialect: GeminiDialect) -> str:
    return upstream_tool_name(str(name or ""), dialect.tool_name_limit, lead_letter=True)


# --- request -------------------------------------------------------------------------------------


def to_gemini_request(req: dict[str, Any], dialect: GeminiDialect = GENERIC) -> dict[str, Any]:
    """Messages request body -> GenerateContentRequest body (the model goes in the URL)."""
    system_parts = [{"text": b["text"]} for b in system_texts(req)]
    names = _tool_use_names(req, dialect)
    contents: list[dict[str, Any]] = []
    for msg in req.get("messages") or ():
        if not isinstance(msg, Mapping):
            continue
        blocks = blocks_of(msg.get("content"))
        if msg.get("role") == "system":
            system_parts.extend(
                {"text": b["text"]} for b in blocks if b.get("type") == "text" and b.get("text")
            )
            continue
        if msg.get("role") == "assistant":
            role, parts = "model", _model_parts(blocks, dialect)
        else:
            role, parts = "user", _user_parts(blocks, names, dialect)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if dialect.dummy_signature:
        for content in contents:
            if content["role"] == "model":
                _sign_first_call(content["parts"])

    body: dict[str, Any] = {"contents": contents}
    if system_parts:
        body["systemInstruction"] = {"parts": system_parts}
    declarations = _declarations(req, dialect)
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
        config = _tool_config(req.get("tool_choice"), dialect)
        if config is not None:
            body["toolConfig"] = {"functionCallingConfig": config}
    body["generationConfig"] = _generation_config(req, dialect)
    return body


def _sign_first_call(parts: list[dict[str, Any]]) -> None:
    for part in parts:
        if "functionCall" in part:
            part.setdefault("thoughtSignature", DUMMY_SIGNATURE)
            return


def _tool_use_names(req: Mapping[str, Any], dialect: GeminiDialect) -> dict[str, str]:
    """tool_use id -> upstream function name, from the history's tool_use blocks."""
    out: dict[str, str] = {}
    for msg in req.get("messages") or ():
        for block in blocks_of(mapping(msg).get("content")):
            if block.get("type") == "tool_use" and block.get("id"):
                out[sanitize_id(block["id"], "")] = _fn_name(block.get("name"), dialect)
    return out


def _declarations(req: Mapping[str, Any], dialect: GeminiDialect) -> list[dict[str, Any]]:
    out = []
    for tool in req.get("tools") or ():
        if not isinstance(tool, Mapping) or tool.get("type") not in (None, "custom") or not tool.get("name"):
            continue
        decl: dict[str, Any] = {"name": _fn_name(tool["name"], dialect)}
        if tool.get("description"):
            decl["description"] = tool["description"]
        schema = tool.get("input_schema")
        params = to_gemini_schema(schema) if isinstance(schema, Mapping) else {}
        if params.get("properties"):
            decl["parameters"] = params
        out.append(decl)
    return out


def _tool_config(choice: Any, dialect: GeminiDialect) -> dict[str, Any] | None:
    choice = mapping(choice)
    kind = choice.get("type")
    if kind == "any":
        return {"mode": "ANY"}
    if kind == "tool" and choice.get("name"):
        return {"mode": "ANY", "allowedFunctionNames": [_fn_name(choice["name"], dialect)]}
    if kind == "none":
        return {"mode": "NONE"}
    if kind == "auto":
        return {"mode": "AUTO"}
    return None


def _generation_config(req: Mapping[str, Any], dialect: GeminiDialect) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = req.get("max_tokens")
    if isinstance(max_tokens, int):
        if dialect.max_output_tokens is not None:
            max_tokens = min(max_tokens, dialect.max_output_tokens)
        config["maxOutputTokens"] = max_tokens
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        if req.get(src) is not None:
            config[dst] = req[src]
    stops = [s for s in req.get("stop_sequences") or () if isinstance(s, str) and s]
    if stops:
        config["stopSequences"] = stops[: dialect.max_stop]
    thinking = _thinking_config(req, dialect)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    fmt = (
        (req.get("output_config") or {}).get("format")
        if isinstance(req.get("output_config"), Mapping)
        else None
    )
    if (
        isinstance(fmt, Mapping)
        and fmt.get("type") == "json_schema"
        and isinstance(fmt.get("schema"), Mapping)
    ):
        config["responseMimeType"] = "application/json"
        config["responseSchema"] = to_gemini_schema(fmt["schema"])
    return config


def _thinking_config(req: Mapping[str, Any], dialect: GeminiDialect) -> dict[str, Any] | None:
    effort = requested_effort(req)
    thinking = mapping(req.get("thinking"))
    low, high = dialect.budget_range
    if effort is None:
        if dialect.thinking == "level":
            return {"thinkingLevel": dialect.off_level} if dialect.off_level else None
        return {"thinkingBudget": dialect.off_budget} if dialect.off_budget is not None else None
    show = thinking.get("display") != "omitted"
    if dialect.thinking == "level":
        return {"thinkingLevel": snap_effort(effort, dialect.levels or ("high",)), "includeThoughts": show}
    explicit = (
        (req.get("output_config") or {}).get("effort")
        if isinstance(req.get("output_config"), Mapping)
        else None
    )
    if thinking.get("type") == "enabled" and isinstance(thinking.get("budget_tokens"), int) and not explicit:
        budget = thinking["budget_tokens"]
    elif thinking.get("type") == "adaptive" and not explicit:
        return {"thinkingBudget": -1, "includeThoughts": show}
    else:
        budget = _EFFORT_BUDGET.get(effort, 8192)
    return {"thinkingBudget": max(low, min(high, budget)), "includeThoughts": show}


def _model_parts(blocks: list[dict[str, Any]], dialect: GeminiDialect) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    pending: str | None = None
    for block in blocks:
        kind = block.get("type")
        if kind == "thinking":
            sig = read_gateway_signature(block.get("signature"))
            if sig is None or not sig[1]:
                continue
            if sig[0] == SIG_GEMINI_NEXT:
                pending = sig[1]
            elif sig[0] == SIG_GEMINI_THOUGHT:
                parts.append(
                    {"text": block.get("thinking") or "", "thought": True, "thoughtSignature": sig[1]}
                )
            continue
        if kind == "text" and block.get("text"):
            part: dict[str, Any] = {"text": block["text"]}
        elif kind == "tool_use":
            args = block.get("input")
            call: dict[str, Any] = {
                "id": sanitize_id(block.get("id"), f"call_{len(parts)}"),
                "name": _fn_name(block.get("name"), dialect),
            }
            call["args"] = args if isinstance(args, dict) else {}
            part = {"functionCall": call}
        else:
            continue
        if pending is not None:
            part["thoughtSignature"] = pending
            pending = None
        parts.append(part)
    if pending is not None:
        parts.append({"text": "", "thoughtSignature": pending})
    return parts


def _user_parts(
    blocks: list[dict[str, Any]], names: Mapping[str, str], dialect: GeminiDialect
) -> list[dict[str, Any]]:
    """Function responses first (Gemini pairs them with the previous turn's calls), then the rest."""
    responses: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_result":
            call_id = sanitize_id(block.get("tool_use_id"), "")
            text, media = _tool_result(block)
            name = names.get(call_id)
            if name is None:
                rest.append({"text": f"[result of tool call {call_id or 'unknown'}]\n{text}"})
                rest.extend(media)
                continue
            response: dict[str, Any] = {
                "id": call_id,
                "name": name,
                "response": {"error" if block.get("is_error") else "output": text},
            }
            if media and dialect.function_response_parts:
                response["parts"] = media
            elif media:
                after.append({"text": f"Attachments from tool result {call_id}:"})
                after.extend(media)
            responses.append({"functionResponse": response})
        elif kind == "text":
            if block.get("text"):
                rest.append({"text": block["text"]})
        else:
            rest.extend(_media_parts(block))
    return responses + after + rest


def _tool_result(block: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    for item in blocks_of(content):
        kind = item.get("type")
        if kind == "text":
            if item.get("text"):
                texts.append(item["text"])
        elif kind == "search_result":
            inner = "\n".join(
                b.get("text", "") for b in blocks_of(item.get("content")) if b.get("type") == "text"
            )
            texts.append("\n".join(x for x in (item.get("title"), item.get("source"), inner) if x))
        else:
            for part in _media_parts(item):
                if "text" in part:
                    texts.append(part["text"])
                else:
                    media.append(part)
    return "\n".join(texts), media


def _media_parts(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An image or document block as Gemini parts; other block kinds contribute nothing."""
    kind = block.get("type")
    source = mapping(block.get("source"))
    src = source.get("type")
    if kind not in ("image", "document"):
        return []
    default_mime = "image/jpeg" if kind == "image" else "application/pdf"
    if src == "base64":
        return [
            {
                "inlineData": {
                    "mimeType": source.get("media_type") or default_mime,
                    "data": source.get("data", ""),
                }
            }
        ]
    if src == "url" and source.get("url"):
        return [
            {"fileData": {"mimeType": _mime_from_url(source["url"], default_mime), "fileUri": source["url"]}}
        ]
    if kind != "document":
        return []
    title = block.get("title")
    if src == "text":
        data = str(source.get("data", ""))
        return [{"text": f"{title}\n{data}" if title else data}] if data or title else []
    if src == "content":
        out: list[dict[str, Any]] = []
        for inner in blocks_of(source.get("content")):
            if inner.get("type") == "text" and inner.get("text"):
                out.append({"text": inner["text"]})
            else:
                out.extend(_media_parts(inner))
        return out
    return []


_MIME_BY_SUFFIX: Final[Mapping[str, str]] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
}


def _mime_from_url(url: str, default: str) -> str:
    path = url.split("?", 1)[0].lower()
    for suffix, mime in _MIME_BY_SUFFIX.items():
        if path.endswith(suffix):
            return mime
    return default


# --- response ------------------------------------------------------------------------------------


def from_gemini_response(
    resp: dict[str, Any],
    model: str,
    tool_names: Mapping[str, str] | None = None,
    late_text_signatures: bool = True,
) -> dict[str, Any]:
    """GenerateContentResponse -> Anthropic Message (``model`` = what the client asked for)."""
    translator = GeminiStreamTranslator(model, None, tool_names, late_text_signatures)
    translator.feed(resp)
    translator.finish()
    return translator.message()


class GeminiStreamTranslator(JsonEventSource):
    """streamGenerateContent chunks -> Anthropic stream events, one parsed ``data:`` object at a time.

    Each chunk holds only new parts; usageMetadata repeats cumulatively (last wins); finishReason
    comes on the last chunk. Blocks close at finishReason; message_delta and message_stop go out at
    ``finish()`` (end of the upstream stream), so trailing chunks still count.

    ``late_text_signatures=False`` drops a signature that comes on a text part once the answer text
    has begun (Gemini 3 ends text answers with a signed empty part): carried in a thinking block
    there, it would split the answer or end the message after it, and clients that read the last
    text block (Claude Code's printed result) would lose the answer. Gemini validates only
    functionCall signatures, so the next turn is still accepted.
    """

    def __init__(
        self,
        model: str,
        message_id: str | None = None,
        tool_names: Mapping[str, str] | None = None,
        late_text_signatures: bool = True,
    ) -> None:
        self.model = model
        self._message_id = message_id
        self._names = dict(tool_names or {})
        self._late_text_signatures = late_text_signatures
        self._builder: MessageStreamBuilder | None = None
        self._finish_reason: str | None = None
        self._calls = 0
        self._id_seed = ""
        self.usage: dict[str, int] = empty_usage()

    @property
    def completed(self) -> bool:
        """A finishReason (or a prompt block) was seen."""
        return self._finish_reason is not None or self._done

    def error_message(self, payload: dict[str, Any]) -> str | None:
        """An in-stream error object without candidates ends the stream as a failure."""
        if "error" in payload and not payload.get("candidates"):
            err = payload["error"] if isinstance(payload["error"], dict) else {}
            return str(err.get("message") or "the upstream stream failed")
        return None

    def feed(self, chunk: dict[str, Any]) -> Events:
        if isinstance(chunk.get("usageMetadata"), Mapping):
            self.usage = usage_from_gemini(chunk["usageMetadata"])
        builder, out = self._start(chunk)
        if builder.ended:
            return out
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, Mapping) else str(error)
            return out + builder.error("api_error", str(message or "upstream stream error"))
        candidates = chunk.get("candidates") or []
        candidate = candidates[0] if candidates and isinstance(candidates[0], Mapping) else None
        if candidate is None:
            feedback = chunk.get("promptFeedback")
            if isinstance(feedback, Mapping) and feedback.get("blockReason") and self._finish_reason is None:
                self._finish_reason = "SAFETY"
            return out
        if self._finish_reason is not None:
            return out
        content = mapping(candidate.get("content"))
        for part in content.get("parts") or ():
            if isinstance(part, Mapping):
                out += self._part(builder, part)
        if candidate.get("finishReason"):
            self._finish_reason = str(candidate["finishReason"])
            out += builder.close()
        return out

    def finish(self) -> Events:
        """Upstream ended: close whatever is open, then message_delta and message_stop."""
        builder, out = self._start({})
        return out + builder.finish(stop_from_gemini(self._finish_reason), self.usage)

    def fail(self, error_type: str, message: str) -> Events:
        """The upstream broke mid-stream: an ``error`` event ends the client stream."""
        builder, out = self._start({})
        return out + builder.error(error_type, message)

    def message(self) -> dict[str, Any]:
        builder, _ = self._start({})
        return builder.message()

    # --- internals ---------------------------------------------------------------------------

    def _start(self, chunk: Mapping[str, Any]) -> tuple[MessageStreamBuilder, Events]:
        if self._builder is not None:
            return self._builder, []
        response_id = chunk.get("responseId")
        message_id = self._message_id or new_message_id(response_id)
        self._id_seed = sanitize_id(response_id, message_id.removeprefix("msg_"))
        self._builder = MessageStreamBuilder(self.model, message_id, gateway_signature(SIG_GEMINI_THOUGHT))
        return self._builder, self._builder.start(self.usage)

    def _part(self, builder: MessageStreamBuilder, part: Mapping[str, Any]) -> Events:
        sig = string(part.get("thoughtSignature"))
        text = string(part.get("text"))
        if part.get("thought"):
            out = builder.thinking(text)
            if sig:
                out += builder.signature(gateway_signature(SIG_GEMINI_THOUGHT, sig))
            return out
        call = part.get("functionCall")
        if sig and not isinstance(call, Mapping) and not self._late_text_signatures and any(
            b["type"] == "text" for b in builder.content
        ):
            sig = ""
        if not (text or isinstance(call, Mapping)):
            return builder.signature(gateway_signature(SIG_GEMINI_NEXT, sig)) if sig else []
        out = builder.signature(gateway_signature(SIG_GEMINI_NEXT, sig)) if sig else []
        if isinstance(call, Mapping):
            self._calls += 1
            tool_id = sanitize_id(call.get("id"), f"toolu_{self._id_seed}_{self._calls - 1}")
            name = str(call.get("name") or "")
            args = mapping(call.get("args"))
            out += builder.tool_use(tool_id, self._names.get(name, name), orjson.dumps(args).decode())
            out += builder.close()
        else:
            out += builder.text(text)
        return out
