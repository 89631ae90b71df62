"""Properties of the Messages-side translators over generated inputs.

(a) Valid Messages requests of every shape translate to Chat Completions and Gemini without an
    exception, into structurally valid bodies (tool results right after their calls, every
    functionResponse named after its call, no foreign reasoning leaked).
(b) Every recorded stream, cut at arbitrary byte boundaries, gives the same events and the same
    final message as when fed whole.
(c) Generated JSON Schemas come out of ``to_gemini_schema`` using only Gemini's keywords.
"""

from __future__ import annotations

import copy
import re
import string
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bytespike.protocols.gemini.schema import GEMINI_SCHEMA_KEYWORDS, GEMINI_TYPES, to_gemini_schema
from bytespike.protocols.gemini.upstream import (
    GEMINI_3,
    GEMINI_25_FLASH,
    GEMINI_25_PRO,
    GeminiStreamTranslator,
    to_gemini_request,
)
from bytespike.protocols.hub import SIG_GEMINI_NEXT, SIG_GEMINI_THOUGHT, SIG_REASONING, gateway_signature
from bytespike.protocols.openai_chat.upstream import (
    DEEPSEEK,
    GENERIC,
    OPENAI_GPT5,
    ChatDialect,
    ChatStreamTranslator,
    to_chat_request,
)
from bytespike.protocols.sse import SSEParser
from test_anthropic_stream import accumulate, check_stream
from test_translate_gemini import interactions as gemini_interactions
from test_translate_openai_chat import recorded_streams as chat_streams

SECRET = "ANTHROPIC-ONLY-REASONING"
CHAT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
GEMINI_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- (a) generated Messages requests -----------------------------------------------------------

names = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=90)
words = st.text(alphabet=string.ascii_letters + " .,'\"\\\n{}é漢", min_size=1, max_size=30)
b64 = st.text(alphabet=string.ascii_letters + string.digits + "+/", min_size=4, max_size=24).map(
    lambda s: s + "=="
)
tool_ids = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=6,
)
cache = st.sampled_from([None, {"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}])


@st.composite
def text_block(draw: st.DrawFn) -> dict[str, Any]:
    block = {"type": "text", "text": draw(words)}
    control = draw(cache)
    if control:
        block["cache_control"] = control
    return block


image_block = st.one_of(
    st.builds(
        lambda d, m: {"type": "image", "source": {"type": "base64", "media_type": m, "data": d}},
        b64,
        st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"]),
    ),
    st.builds(
        lambda p: {"type": "image", "source": {"type": "url", "url": f"https://example.com/{p}.png"}},
        tool_ids,
    ),
)
document_block = st.one_of(
    st.builds(
        lambda d, t: {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": d},
            **({"title": t} if t else {}),
        },
        b64,
        st.none() | words,
    ),
    st.builds(
        lambda d: {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": d}},
        words,
    ),
    st.builds(
        lambda u: {"type": "document", "source": {"type": "url", "url": f"https://example.com/{u}.pdf"}},
        tool_ids,
    ),
    st.builds(
        lambda b: {"type": "document", "source": {"type": "content", "content": b}},
        st.lists(text_block(), min_size=1, max_size=2),
    ),
)
user_block = st.one_of(text_block(), image_block, document_block)
signature = st.one_of(
    st.just("EqQBCkgIARABGAIiQAnthropicLike=="),
    st.just(gateway_signature(SIG_REASONING)),
    b64.map(lambda s: gateway_signature(SIG_GEMINI_NEXT, s)),
    b64.map(lambda s: gateway_signature(SIG_GEMINI_THOUGHT, s)),
    st.just(gateway_signature(SIG_GEMINI_THOUGHT)),
    st.just(""),
)


@st.composite
def thinking_block(draw: st.DrawFn) -> dict[str, Any]:
    sig = draw(signature)
    text = SECRET if sig.startswith("Eq") else draw(words)
    return {"type": "thinking", "thinking": text, "signature": sig}


@st.composite
def tool_result(draw: st.DrawFn, tool_use_id: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
    content = draw(
        st.none() | words | st.lists(st.one_of(text_block(), image_block, document_block), max_size=3)
    )
    if content is not None:
        block["content"] = content
    if draw(st.booleans()):
        block["is_error"] = draw(st.booleans())
    return block


@st.composite
def messages_request(draw: st.DrawFn) -> dict[str, Any]:
    tool_names = draw(st.lists(names, min_size=0, max_size=3, unique=True))
    req: dict[str, Any] = {
        "model": "client-model",
        "max_tokens": draw(st.integers(1, 128000)),
        "messages": [],
    }
    if tool_names:
        req["tools"] = [
            {
                "name": n,
                "description": draw(words),
                "input_schema": draw(json_schemas(depth=1)) | {"type": "object"},
            }
            for n in tool_names
        ]
        choice = draw(st.sampled_from(["auto", "any", "tool", "none", None]))
        if choice:
            req["tool_choice"] = {"type": choice}
            if choice == "tool":
                req["tool_choice"]["name"] = draw(st.sampled_from(tool_names))
            if choice != "none" and draw(st.booleans()):
                req["tool_choice"]["disable_parallel_tool_use"] = True
    system = draw(st.none() | words | st.lists(text_block(), min_size=1, max_size=3))
    if system is not None:
        req["system"] = system
    thinking = draw(
        st.sampled_from(
            [
                None,
                {"type": "disabled"},
                {"type": "adaptive"},
                {"type": "enabled", "budget_tokens": 1024},
                {"type": "enabled", "budget_tokens": 40000},
            ]
        )
    )
    if thinking:
        req["thinking"] = thinking
    if draw(st.booleans()):
        req["output_config"] = {"effort": draw(st.sampled_from(["low", "medium", "high", "xhigh", "max"]))}
    for key, value in (
        ("temperature", st.floats(0, 1)),
        ("top_p", st.floats(0, 1)),
        ("top_k", st.integers(1, 100)),
        ("stop_sequences", st.lists(words, max_size=6)),
        ("metadata", st.builds(lambda u: {"user_id": u}, st.text(min_size=1, max_size=100))),
        ("stream", st.booleans()),
    ):
        if draw(st.booleans()):
            req[key] = draw(value)

    pending_ids: list[str] = []
    used_ids: set[str] = set()
    for _ in range(draw(st.integers(1, 4))):
        blocks: list[dict[str, Any]] = [draw(tool_result(tid)) for tid in pending_ids]
        blocks += draw(st.lists(user_block, min_size=0 if pending_ids else 1, max_size=3))
        user_content: Any = blocks
        if not pending_ids and len(blocks) == 1 and blocks[0]["type"] == "text" and draw(st.booleans()):
            user_content = blocks[0]["text"]
        req["messages"].append({"role": "user", "content": user_content})
        if draw(st.integers(0, 4)) == 0:
            req["messages"].append({"role": "system", "content": draw(words)})
        assistant: list[dict[str, Any]] = []
        if draw(st.booleans()):
            assistant.append(draw(thinking_block()))
        if draw(st.booleans()):
            assistant.append(draw(text_block()))
        pending_ids = []
        if tool_names:
            for _ in range(draw(st.integers(0, 3))):
                tid = draw(tool_ids.filter(lambda t: t not in used_ids))
                used_ids.add(tid)
                pending_ids.append(tid)
                if draw(st.integers(0, 3)) == 0:
                    assistant.append(draw(thinking_block()))
                assistant.append(
                    {
                        "type": "tool_use",
                        "id": tid,
                        "name": draw(st.sampled_from(tool_names)),
                        "input": draw(st.dictionaries(words, json_values, max_size=3)),
                    }
                )
        if not assistant:
            assistant.append({"type": "text", "text": draw(words)})
        req["messages"].append(
            {
                "role": "assistant",
                "content": assistant
                if draw(st.booleans()) or len(assistant) > 1
                else assistant[0].get("text", assistant),
            }
        )
    blocks = [draw(tool_result(tid)) for tid in pending_ids] + draw(
        st.lists(user_block, min_size=0 if pending_ids else 1, max_size=2)
    )
    req["messages"].append({"role": "user", "content": blocks})
    return req


def check_chat_body(body: dict[str, Any]) -> None:
    orjson.dumps(body)
    assert SECRET not in orjson.dumps(body).decode()
    open_calls: set[str] | None = None
    for msg in body["messages"]:
        role = msg["role"]
        assert role in ("system", "user", "assistant", "tool")
        if role == "tool":
            assert open_calls is not None and msg["tool_call_id"] in open_calls, (
                "tool message without its call right before it"
            )
            open_calls.discard(msg["tool_call_id"])
            assert isinstance(msg["content"], str)
            continue
        assert not open_calls, f"tool calls {open_calls} left without results"
        open_calls = None
        if role == "assistant":
            assert msg.get("content") or msg.get("tool_calls")
            if msg.get("tool_calls"):
                open_calls = {c["id"] for c in msg["tool_calls"]}
                for call in msg["tool_calls"]:
                    assert CHAT_NAME.match(call["function"]["name"])
                    assert isinstance(orjson.loads(call["function"]["arguments"]), dict)
        elif role == "user" and isinstance(msg["content"], list):
            assert msg["content"] and all(p["type"] in ("text", "image_url", "file") for p in msg["content"])
    assert not open_calls
    for tool in body.get("tools", ()):
        assert CHAT_NAME.match(tool["function"]["name"])


def check_gemini_body(body: dict[str, Any]) -> None:
    assert SECRET not in orjson.dumps(body).decode()
    contents = body["contents"]
    assert all(c["role"] in ("user", "model") and c["parts"] for c in contents)
    assert all(a["role"] != b["role"] for a, b in zip(contents, contents[1:], strict=False)), (
        "same-role turns not merged"
    )
    for i, content in enumerate(contents):
        for part in content["parts"]:
            assert len(GEMINI_DATA & part.keys()) == 1, f"part with not exactly one data field: {part}"
        calls = [p["functionCall"] for p in content["parts"] if "functionCall" in p]
        if content["role"] == "model" and calls:
            first = next(p for p in content["parts"] if "functionCall" in p)
            assert first.get("thoughtSignature"), "first functionCall of a model turn without a signature"
        responses = [p["functionResponse"] for p in content["parts"] if "functionResponse" in p]
        if responses:
            assert i > 0 and contents[i - 1]["role"] == "model"
            called = {
                c["id"]: c["name"]
                for c in contents[i - 1]["parts"]
                and [p["functionCall"] for p in contents[i - 1]["parts"] if "functionCall" in p]
            }
            for response in responses:
                assert response["name"], "functionResponse without a name"
                assert called.get(response["id"]) == response["name"], (
                    "functionResponse not matching a call of the turn before"
                )
                assert set(response["response"]) <= {"output", "error"}
    for tool in body.get("tools", ()):
        for decl in tool["functionDeclarations"]:
            if "parameters" in decl:
                check_gemini_schema(decl["parameters"])


@PROPERTY
@given(req=messages_request())
def test_generated_requests_translate_to_valid_chat_bodies(req: dict[str, Any]) -> None:
    before = copy.deepcopy(req)
    for dialect in (GENERIC, OPENAI_GPT5, DEEPSEEK, ChatDialect(cache_control=True, supports_top_k=True)):
        check_chat_body(to_chat_request(req, "upstream", dialect))
    assert req == before, "the request was modified"


@PROPERTY
@given(req=messages_request())
def test_generated_requests_translate_to_valid_gemini_bodies(req: dict[str, Any]) -> None:
    before = copy.deepcopy(req)
    for dialect in (GEMINI_25_FLASH, GEMINI_25_PRO, GEMINI_3):
        check_gemini_body(to_gemini_request(req, dialect))
    assert req == before, "the request was modified"


# --- (b) recorded streams cut anywhere ---------------------------------------------------------

STREAMS = [("chat", name, raw) for name, raw in chat_streams()] + [
    ("gemini", name, raw) for name, _, raw in gemini_interactions()
]


def replay(kind: str, raw: bytes, cuts: list[int]) -> list[tuple[str, dict[str, Any]]]:
    translator: Any = (
        ChatStreamTranslator("m", "msg_cut") if kind == "chat" else GeminiStreamTranslator("m", "msg_cut")
    )
    parser = SSEParser()
    events: list[tuple[str, dict[str, Any]]] = []
    bounds = [0, *sorted(set(cuts)), len(raw)]
    pieces = [raw[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    for frame in [e for piece in pieces for e in parser.feed(piece)] + parser.close():
        if frame.data and frame.data != "[DONE]":
            events += translator.feed(orjson.loads(frame.data))
    return events + translator.finish()


@pytest.mark.parametrize(("kind", "name", "raw"), STREAMS, ids=[f"{k}:{n}" for k, n, _ in STREAMS])
def test_recorded_streams_cut_anywhere_give_the_same_message(kind: str, name: str, raw: bytes) -> None:
    whole = replay(kind, raw, [])
    check_stream(whole)
    expected = accumulate(whole)

    @settings(max_examples=15, deadline=None)
    @given(cuts=st.lists(st.integers(0, len(raw)), max_size=40))
    def cut(cuts: list[int]) -> None:
        events = replay(kind, raw, cuts)
        assert events == whole
        assert accumulate(events) == expected

    cut()


# --- (c) JSON Schemas into Gemini's subset -----------------------------------------------------

schema_types = st.sampled_from(["string", "number", "integer", "boolean", "array", "object", "null"])


SCHEMA_KEYWORDS: dict[str, st.SearchStrategy[Any]] = {
    "description": words,
    "title": words,
    "$schema": st.just("http://json-schema.org/draft-07/schema#"),
    "$id": st.just("urn:x"),
    "additionalProperties": st.booleans(),
    "exclusiveMinimum": st.integers(-5, 5),
    "exclusiveMaximum": st.floats(-5, 5, allow_nan=False),
    "minimum": st.integers(-5, 5),
    "maxLength": st.integers(0, 9),
    "pattern": st.just("^[a-z]+$"),
    "format": st.sampled_from(["date-time", "uri", "email", "int32", "float", "enum", "uuid"]),
    "const": json_values,
    "enum": st.lists(
        st.one_of(words, st.just(""), st.integers(-(2**31), 2**31), st.none(), st.booleans()),
        min_size=1,
        max_size=4,
    ),
    "default": json_values,
    "examples": st.lists(json_values, max_size=2),
    "nullable": st.booleans(),
    "propertyNames": st.just({"pattern": "^x"}),
    "patternProperties": st.just({"^x": {"type": "string"}}),
    "uniqueItems": st.booleans(),
    "multipleOf": st.integers(1, 4),
    "readOnly": st.booleans(),
    "not": st.just({"type": "string"}),
    "if": st.just({"required": ["a"]}),
}
STRUCTURE = ["properties", "items", "prefixItems", "anyOf", "oneOf", "allOf", "$defs"]


@st.composite
def json_schemas(draw: st.DrawFn, depth: int = 3) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for key in draw(st.sets(st.sampled_from(["type", *SCHEMA_KEYWORDS]), max_size=5)):
        node[key] = (
            draw(schema_types | st.lists(schema_types, min_size=1, max_size=3, unique=True))
            if key == "type"
            else draw(SCHEMA_KEYWORDS[key])
        )
    if depth <= 0:
        return node
    child = json_schemas(depth=depth - 1)
    for key in draw(st.sets(st.sampled_from(STRUCTURE), max_size=3)):
        if key == "properties":
            props = draw(
                st.dictionaries(
                    st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=5), child, max_size=3
                )
            )
            node["properties"] = props
            node["required"] = draw(st.lists(st.sampled_from([*props, "missing"]), max_size=3))
        elif key == "items":
            node["items"] = draw(child | st.lists(child, min_size=1, max_size=2))
        elif key == "prefixItems":
            node["prefixItems"] = draw(st.lists(child, min_size=1, max_size=2))
        elif key == "$defs":
            node["$defs"] = {
                "Node": draw(child),
                "Loop": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Loop"}}},
            }
            ref = draw(st.sampled_from(["#/$defs/Node", "#/$defs/Loop", "#/$defs/Missing"]))
            node.setdefault("properties", {})["linked"] = {"$ref": ref}
        else:
            node[key] = draw(st.lists(child | st.just({"type": "null"}), min_size=1, max_size=3))
    return node


def check_gemini_schema(schema: Any) -> None:
    """Every schema position holds only Gemini keywords with values of the right shape."""
    assert isinstance(schema, dict)
    extra = schema.keys() - GEMINI_SCHEMA_KEYWORDS
    assert not extra, f"keywords Gemini rejects: {extra}"
    if "type" in schema:
        assert schema["type"] in GEMINI_TYPES
    if "enum" in schema:
        assert schema.get("type") == "string"
        assert schema["enum"] and all(isinstance(v, str) and v for v in schema["enum"])
    if "format" in schema:
        assert schema["format"] in {"enum", "date-time", "float", "double", "int32", "int64"}
    if "nullable" in schema:
        assert schema["nullable"] is True
    if "properties" in schema:
        assert schema["properties"] and schema.get("type") == "object"
        for child in schema["properties"].values():
            check_gemini_schema(child)
    if "required" in schema:
        assert set(schema["required"]) <= set(schema.get("properties", {}))
    if "items" in schema:
        check_gemini_schema(schema["items"])
    for member in schema.get("anyOf", ()):
        check_gemini_schema(member)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=json_schemas(depth=2))
def test_generated_schemas_come_out_in_geminis_subset(schema: dict[str, Any]) -> None:
    before = copy.deepcopy(schema)
    out = to_gemini_schema(schema)
    check_gemini_schema(out)
    assert "$ref" not in orjson.dumps(out).decode()
    assert schema == before, "the input schema was modified"
    assert to_gemini_schema(out) == out, "sanitising is not idempotent"
