"""Pieces every Messages-side translator shares: stop reasons, usage, ids, tool names, signatures.

All functions are pure; tables are read-only mappings.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from random import getrandbits
from types import MappingProxyType
from typing import Any, Final

Event = tuple[str, dict[str, Any]]
Events = list[Event]

STOP_REASONS: Final = frozenset(
    {
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    }
)

_OPENAI_FINISH: Final[Mapping[str, str]] = MappingProxyType(
    {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "function_call": "tool_use",
        "content_filter": "refusal",
    }
)

_GEMINI_FINISH: Final[Mapping[str, str]] = MappingProxyType(
    {
        "STOP": "end_turn",
        "MAX_TOKENS": "max_tokens",
        "SAFETY": "refusal",
        "RECITATION": "refusal",
        "LANGUAGE": "refusal",
        "BLOCKLIST": "refusal",
        "PROHIBITED_CONTENT": "refusal",
        "SPII": "refusal",
        "IMAGE_SAFETY": "refusal",
        "IMAGE_PROHIBITED_CONTENT": "refusal",
        "IMAGE_RECITATION": "refusal",
        "IMAGE_OTHER": "refusal",
    }
)


def stop_from_openai(finish_reason: str | None) -> str:
    """Chat Completions finish_reason -> Anthropic stop_reason; unknown values end the turn."""
    return _OPENAI_FINISH.get(finish_reason or "", "end_turn")


def stop_from_gemini(finish_reason: str | None) -> str:
    """Gemini finishReason -> Anthropic stop_reason. Malformed or unexpected tool calls end the turn."""
    return _GEMINI_FINISH.get(finish_reason or "", "end_turn")


_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one, so readers can chain ``.get``."""
    return value if isinstance(value, Mapping) else _EMPTY


def string(value: Any) -> str:
    """``value`` when it is a string, else ``""``."""
    return value if isinstance(value, str) else ""


# --- usage -------------------------------------------------------------------------------------


def empty_usage() -> dict[str, int]:
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_openai(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """Chat Completions usage -> Anthropic split: prompt_tokens includes cache reads and writes."""
    if not usage:
        return empty_usage()
    details = usage.get("prompt_tokens_details") or {}
    cache_read = _int(details.get("cached_tokens")) or _int(usage.get("prompt_cache_hit_tokens"))
    cache_write = _int(details.get("cache_write_tokens"))
    prompt = _int(usage.get("prompt_tokens"))
    out: dict[str, Any] = {
        "input_tokens": max(prompt - cache_read - cache_write, 0),
        "output_tokens": _int(usage.get("completion_tokens")),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }
    _thinking_tokens(out, _int(mapping(usage.get("completion_tokens_details")).get("reasoning_tokens")))
    return out


def usage_from_gemini(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """Gemini usageMetadata -> Anthropic split: candidates exclude thoughts, the prompt includes the cache."""
    if not usage:
        return empty_usage()
    cached = _int(usage.get("cachedContentTokenCount"))
    prompt = _int(usage.get("promptTokenCount")) + _int(usage.get("toolUsePromptTokenCount"))
    out: dict[str, Any] = {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": _int(usage.get("candidatesTokenCount")) + _int(usage.get("thoughtsTokenCount")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }
    _thinking_tokens(out, _int(usage.get("thoughtsTokenCount")))
    return out


def _thinking_tokens(usage: dict[str, Any], tokens: int) -> None:
    """Reasoning tokens (part of output_tokens) as Anthropic reports them, when the vendor said how many."""
    if tokens:
        usage["output_tokens_details"] = {"thinking_tokens": tokens}


# --- model families ------------------------------------------------------------------------------

_OPENAI_REASONING = re.compile(r"^(?:[\w.-]+/)?(gpt-5|o1|o3|o4)")


def openai_reasoning_family(model: str) -> str | None:
    """``"gpt5"`` or ``"o_series"`` for OpenAI reasoning models by name (gpt-5*, o1, o3, o4*), else None.
    These take max_completion_tokens / max_output_tokens and only the default temperature and top_p."""
    m = _OPENAI_REASONING.match(model.lower())
    if m is None:
        return None
    return "gpt5" if m.group(1) == "gpt-5" else "o_series"


# --- ids ---------------------------------------------------------------------------------------

_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")


def sanitize_id(raw: Any, fallback: str) -> str:
    """An id usable as an Anthropic tool_use.id (``^[a-zA-Z0-9_-]+$``): bad characters become ``_``."""
    cleaned = _ID_BAD.sub("_", raw) if isinstance(raw, str) else ""
    return cleaned or fallback


def new_message_id(seed: Any = None) -> str:
    """``msg_`` + the upstream id when there is one (stable across replays), else a random one."""
    if isinstance(seed, str) and seed:
        return "msg_" + _ID_BAD.sub("_", seed)
    return f"msg_{getrandbits(128):032x}"


# --- tool names --------------------------------------------------------------------------------


def upstream_tool_name(name: str, limit: int = 64, lead_letter: bool = False) -> str:
    """A tool name the upstream accepts: too long names become prefix + hash (mapped back by
    ``tool_name_map``); ``lead_letter`` (Gemini) prefixes names that do not start with a letter or ``_``."""
    out = name
    if lead_letter and not (out[:1].isalpha() or out[:1] == "_"):
        out = "_" + out
    if len(out) > limit:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        out = out[: limit - 9] + "_" + digest
    return out


def _request_tool_names(req: Mapping[str, Any]) -> Iterable[str]:
    for tool in req.get("tools") or ():
        if isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
            yield tool["name"]
    for msg in req.get("messages") or ():
        content = mapping(msg).get("content")
        if isinstance(content, list):
            for block in content:
                if (
                    isinstance(block, Mapping)
                    and block.get("type") == "tool_use"
                    and isinstance(block.get("name"), str)
                ):
                    yield block["name"]


def tool_name_map(req: Mapping[str, Any], limit: int = 64, lead_letter: bool = False) -> dict[str, str]:
    """Upstream name -> client name, for every tool name the request mentions that had to change."""
    out: dict[str, str] = {}
    for name in _request_tool_names(req):
        alias = upstream_tool_name(name, limit, lead_letter)
        if alias != name:
            out[alias] = name
    return out


# --- gateway-made thinking signatures ----------------------------------------------------------

SIGNATURE_PREFIX: Final = "bytespike:1:"
SIG_REASONING: Final = "reasoning"
SIG_GEMINI_NEXT: Final = "gemini-next"
SIG_GEMINI_THOUGHT: Final = "gemini-thought"


def gateway_signature(kind: str, payload: str = "") -> str:
    """A thinking-block signature the gateway made itself: ``bytespike:1:<kind>:<payload>``.

    Anthropic clients keep a thinking block's signature verbatim, so it carries what the next
    request needs (see ``translate.gemini`` for the Gemini kinds). Real Anthropic signatures never
    start with this prefix.
    """
    return f"{SIGNATURE_PREFIX}{kind}:{payload}"


def read_gateway_signature(signature: Any) -> tuple[str, str] | None:
    """(kind, payload) of a gateway-made signature, None for anything else (e.g. Anthropic's own)."""
    if not isinstance(signature, str) or not signature.startswith(SIGNATURE_PREFIX):
        return None
    kind, sep, payload = signature[len(SIGNATURE_PREFIX) :].partition(":")
    return (kind, payload) if sep else None


# --- request reading ---------------------------------------------------------------------------

EFFORTS: Final = ("minimal", "low", "medium", "high", "xhigh", "max")


def blocks_of(content: Any) -> list[dict[str, Any]]:
    """Message or system content as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


ATTRIBUTION_PREFIX: Final = "x-anthropic-billing-header:"


def _without_attribution(text: str) -> str:
    """``text`` less a leading ``x-anthropic-billing-header: ...`` line."""
    stripped = text.lstrip()
    return stripped.partition("\n")[2] if stripped.startswith(ATTRIBUTION_PREFIX) else text


def system_texts(req: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The top-level system prompt (string or blocks) as non-empty text blocks.

    The attribution line Anthropic clients (Claude Code) put first is left out: it means something
    only to Anthropic, and its per-request hash at the head of the prompt would defeat every other
    vendor's prefix caching.
    """
    system = req.get("system")
    if isinstance(system, str):
        system = _without_attribution(system)
    out = []
    for block in blocks_of(system):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            continue
        text = _without_attribution(block["text"])
        if text:
            out.append(block if text is block["text"] else {**block, "text": text})
    return out


def requested_effort(req: Mapping[str, Any]) -> str | None:
    """The reasoning effort a Messages request asks for, on the EFFORTS scale; None = no thinking.

    ``enabled`` budgets map as < 4096 low, < 16384 medium, < 32768 high, else xhigh;
    ``adaptive`` defaults to high; ``output_config.effort`` wins when given.
    """
    thinking = mapping(req.get("thinking"))
    kind = thinking.get("type")
    if kind not in ("enabled", "adaptive"):
        return None
    effort = mapping(req.get("output_config")).get("effort")
    if effort in EFFORTS:
        return str(effort)
    if kind == "adaptive":
        return "high"
    budget = thinking.get("budget_tokens")
    budget = budget if isinstance(budget, int) else 0
    if budget < 4096:
        return "low"
    if budget < 16384:
        return "medium"
    if budget < 32768:
        return "high"
    return "xhigh"


def snap_effort(effort: str, supported: tuple[str, ...]) -> str:
    """The weakest supported level at least as strong as ``effort``, else the strongest one."""
    rank = EFFORTS.index(effort) if effort in EFFORTS else EFFORTS.index("high")
    ranked = sorted(supported, key=lambda e: EFFORTS.index(e) if e in EFFORTS else 0)
    for level in ranked:
        if (EFFORTS.index(level) if level in EFFORTS else 0) >= rank:
            return level
    return ranked[-1]


def drop_gateway_thinking(req: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request without thinking blocks this gateway signed, or None when it has none.

    For a conversation that moves from a translated model to a Claude one: Anthropic rejects
    thinking blocks whose signature it did not make.
    """
    messages = req.get("messages")
    if not isinstance(messages, list):
        return None
    changed = False
    out = []
    for msg in messages:
        content = mapping(msg).get("content")
        if isinstance(content, list):
            kept = [
                b
                for b in content
                if not (
                    isinstance(b, Mapping)
                    and b.get("type") == "thinking"
                    and read_gateway_signature(b.get("signature"))
                )
            ]
            if len(kept) != len(content):
                changed = True
                msg = {**msg, "content": kept or [{"type": "text", "text": "(no content)"}]}
        out.append(msg)
    return {**req, "messages": out} if changed else None


# One token is about 4 ASCII characters, 2 other alphabetic ones (Cyrillic, Greek, Arabic, ...), one
# CJK or Hangul character, and half an emoji: weights in quarter tokens, so 4 units make a token.
_WIDE = re.compile("[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]")
_EMOJI = re.compile("[\U0001f000-\U0001faff]")


def token_units(text: str) -> int:
    """Generated text's size in quarter tokens, estimated per script (see the weights above)."""
    if text.isascii():
        return len(text)
    ascii_chars = len(text.encode("ascii", "ignore"))
    wide = len(_WIDE.findall(text))
    emoji = len(_EMOJI.findall(text))
    other = len(text) - ascii_chars - wide - emoji
    return ascii_chars + 4 * wide + 8 * emoji + 2 * other


def delta_chars(event: Mapping[str, Any]) -> int:
    """Generated output one ``content_block_delta`` carries (text, thinking, tool JSON), in the
    quarter-token units of ``token_units`` (plain characters for ASCII)."""
    delta = event.get("delta")
    if not isinstance(delta, dict):
        return 0
    for field in ("text", "partial_json", "thinking"):
        value = delta.get(field)
        if isinstance(value, str):
            return token_units(value)
    return 0


def merge_usage(into: dict[str, Any], usage: Mapping[str, Any] | None) -> None:
    """Anthropic usage is cumulative: later values replace earlier ones, field by field."""
    if not usage:
        return
    for k, v in usage.items():
        if v is not None:
            into[k] = v


def lower_max_tokens(req: dict[str, Any], n: int) -> None:
    """Lower a Messages request's ``max_tokens`` to ``n``, keeping any thinking budget below it
    (Anthropic refuses a budget at or above max_tokens); thinking goes when no budget fits."""
    req["max_tokens"] = n
    thinking = req.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and budget >= n:
            if n > 1024:
                thinking["budget_tokens"] = max(1024, n - 1024) if n > 2048 else 1024
                if thinking["budget_tokens"] >= n:
                    req.pop("thinking")
            else:
                req.pop("thinking")
