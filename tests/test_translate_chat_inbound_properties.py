"""Generated Chat requests and byte-split recorded streams through the Chat <-> Messages translators."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bytespike.protocols.openai_chat.inbound import (
    ChatRequestError,
    MessagesToChatStream,
    chat_to_messages_request,
)
from bytespike.protocols.sse import SSEParser

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
OPENCODE = RECORDED / "anomalyco__opencode/packages/llm/test/fixtures/recordings/anthropic-messages"
SDK = RECORDED / "anthropics__anthropic-sdk-python/tests"
ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")
BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result"}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def recorded_streams() -> list[bytes]:
    out = []
    for path in sorted(OPENCODE.glob("*.json")):
        for interaction in json.loads(path.read_text())["interactions"]:
            if interaction["response"]["status"] == 200:
                out.append(interaction["response"]["body"].encode())
    for pattern in ("lib/streaming/fixtures/*.txt", "fixtures/fable-fallback/*.sse"):
        out.extend(path.read_bytes() for path in sorted(SDK.glob(pattern)))
    return out


STREAMS = recorded_streams()

# --------------------------------------------------------------------------------------------------
# Generated requests
# --------------------------------------------------------------------------------------------------

texts = st.text(alphabet=st.sampled_from("ab Zé\n\t{}"), max_size=8)
call_ids = st.text(
    alphabet=st.sampled_from("ab1_-.:/+= "), min_size=1, max_size=4
)  # short: collisions likely
tool_names = st.sampled_from(["get_weather", "search", "now"])
images = st.sampled_from(
    [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}},
    ]
)
parts = st.lists(st.one_of(st.builds(lambda t: {"type": "text", "text": t}, texts), images), max_size=3)
user_content = st.one_of(texts, parts)
arguments = st.one_of(
    st.dictionaries(
        st.sampled_from(["city", "q", "n"]), st.one_of(texts, st.integers(-5, 5)), max_size=2
    ).map(lambda d: json.dumps(d)),
    st.just(""),
    st.just("{not json"),
)


@st.composite
def tool_round(draw: st.DrawFn) -> list[dict]:
    """An assistant turn with tool calls, then tool messages: usually all answered, sometimes not, or orphans."""
    ids = draw(st.lists(call_ids, min_size=1, max_size=3, unique=True))
    calls = [
        {"id": i, "type": "function", "function": {"name": draw(tool_names), "arguments": draw(arguments)}}
        for i in ids
    ]
    content = draw(st.one_of(st.none(), texts))
    out: list[dict] = [{"role": "assistant", "content": content, "tool_calls": calls}]
    answered = draw(st.one_of(st.just(ids), st.permutations(ids), st.lists(st.sampled_from(ids), max_size=4)))
    results = [
        {"role": "tool", "tool_call_id": i, "content": draw(st.one_of(texts, parts.filter(lambda p: not p)))}
        for i in answered
    ]
    results += [
        {"role": "tool", "tool_call_id": i, "content": "orphan"} for i in draw(st.lists(call_ids, max_size=1))
    ]
    if draw(st.booleans()):
        results.insert(draw(st.integers(0, len(results))), {"role": "user", "content": draw(user_content)})
    return out + results


steps = st.one_of(
    st.builds(lambda c: [{"role": "user", "content": c}], user_content),
    st.builds(lambda c: [{"role": "assistant", "content": c}], st.one_of(st.none(), texts)),
    st.builds(lambda r, c: [{"role": r, "content": c}], st.sampled_from(["system", "developer"]), texts),
    tool_round(),
)


@st.composite
def chat_requests(draw: st.DrawFn) -> dict:
    messages = [m for step in draw(st.lists(steps, min_size=1, max_size=6)) for m in step]
    req: dict = {"model": "claude-sonnet-4-6", "messages": messages}
    optional = {
        "max_completion_tokens": st.integers(1, 9000),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "stop": st.one_of(texts, st.lists(texts, max_size=3)),
        "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh", "max"]),
        "tools": st.lists(tool_names, min_size=1, max_size=3, unique=True).map(
            lambda names: [{"type": "function", "function": {"name": n}} for n in names]
        ),
        "tool_choice": st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": "now"}}]
        ),
        "parallel_tool_calls": st.booleans(),
        "response_format": st.sampled_from(
            [
                {"type": "text"},
                {"type": "json_object"},
                {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            ]
        ),
        "n": st.just(1),
        "stream": st.booleans(),
        "user": texts,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            req[key] = draw(strategy)
    return req


def check_messages_request(out: dict, model: str) -> None:
    """What Messages accepts: alternating turns from a user turn, tool results right after their calls."""
    assert out["model"] == model
    assert isinstance(out["max_tokens"], int) and out["max_tokens"] >= 1
    for block in out.get("system", []):
        assert block["type"] == "text" and block["text"].strip()
    turns = out["messages"]
    assert turns and turns[0]["role"] == "user"
    for a, b in zip(turns, turns[1:], strict=False):
        assert a["role"] != b["role"]
    called: list[str] = []
    for turn in turns:
        blocks = turn["content"]
        assert blocks
        for block in blocks:
            assert block["type"] in BLOCK_TYPES
            if block["type"] == "text":
                assert block["text"].strip()
        kinds = [b["type"] for b in blocks]
        if turn["role"] == "assistant":
            assert "tool_result" not in kinds
            uses = [b for b in blocks if b["type"] == "tool_use"]
            assert kinds[len(kinds) - len(uses) :] == ["tool_use"] * len(uses), "calls end the turn"
            for use in uses:
                assert ID_PATTERN.match(use["id"]) and isinstance(use["input"], dict)
            called = [u["id"] for u in uses]
            assert len(set(called)) == len(called)
        else:
            assert "tool_use" not in kinds
            results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
            assert kinds[: len(results)] == ["tool_result"] * len(results), "results open the turn"
            assert sorted(results) == sorted(called), "each call answered once, nothing else"
            called = []
    assert not called
    thinking = out.get("thinking")
    if thinking is not None:
        assert 1024 <= thinking["budget_tokens"] < out["max_tokens"]
        assert not {"temperature", "top_p", "top_k"} & out.keys()
        assert out.get("tool_choice", {}).get("type") not in ("any", "tool")
    if "temperature" in out:
        assert 0 <= out["temperature"] <= 1
    assert "tool_choice" not in out or out.get("tools")
    for tool in out.get("tools", []):
        assert tool["name"] and tool["input_schema"]["type"] == "object"
    for stop in out.get("stop_sequences", []):
        assert stop.strip()


@SETTINGS
@given(chat_requests())
def test_generated_chat_requests_give_valid_messages_requests_or_a_chat_request_error(req: dict) -> None:
    try:
        out = chat_to_messages_request(req, "claude-upstream")
    except ChatRequestError as exc:
        assert exc.message
        assert exc.param is None or exc.param.startswith("messages[")
        return
    check_messages_request(out, "claude-upstream")
    orjson.dumps(out)


@SETTINGS
@given(chat_requests())
def test_distinct_tool_call_ids_stay_distinct_after_sanitising(req: dict) -> None:
    originals = {
        c["id"] for m in req["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []
    }
    try:
        out = chat_to_messages_request(req, "m")
    except ChatRequestError:
        return
    sent = {b["id"] for t in out["messages"] for b in t["content"] if b["type"] == "tool_use"}
    assert len(sent) == len(originals)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5000) | st.floats(allow_nan=False) | texts,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "text",
                    "url",
                    "name",
                    "id",
                    "function",
                    "arguments",
                    "content",
                    "role",
                    "image_url",
                    "file",
                    "file_data",
                    "tool_calls",
                    "tool_call_id",
                    "parameters",
                    "json_schema",
                    "schema",
                    "mode",
                    "tools",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
junk_messages = st.lists(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "tool", "system", "developer", "function", "x"])},
            optional={
                "content": json_values,
                "tool_calls": json_values,
                "tool_call_id": json_values,
                "name": json_values,
                "function_call": json_values,
            },
        ),
    ),
    max_size=4,
)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {"messages": st.one_of(junk_messages, json_values)},
        optional={
            key: json_values
            for key in (
                "tools",
                "tool_choice",
                "functions",
                "function_call",
                "parallel_tool_calls",
                "max_tokens",
                "max_completion_tokens",
                "stop",
                "temperature",
                "top_p",
                "top_k",
                "user",
                "reasoning_effort",
                "response_format",
                "n",
                "stream",
                "modalities",
            )
        },
    )
)
def test_malformed_requests_raise_only_chat_request_error(req: dict) -> None:
    try:
        out = chat_to_messages_request(req, "m")
    except ChatRequestError:
        return
    assert out["messages"][0]["role"] == "user"


# --------------------------------------------------------------------------------------------------
# Streams split anywhere
# --------------------------------------------------------------------------------------------------


def chunks_of(pieces: list[bytes]) -> list[dict]:
    parser = SSEParser()
    stream = MessagesToChatStream("client-model", include_usage=True, completion_id="chatcmpl-p", created=1)
    out: list[dict] = []
    for piece in pieces:
        for event in parser.feed(piece):
            out.extend(stream.feed(event.event, orjson.loads(event.data)))
    for event in parser.close():
        out.extend(stream.feed(event.event, orjson.loads(event.data)))
    return out + stream.finish()


WHOLE = [chunks_of([raw]) for raw in STREAMS]


@SETTINGS
@given(st.data())
def test_recorded_stream_split_at_any_bytes_gives_the_same_chunks(data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(STREAMS) - 1), label="recording")
    raw = STREAMS[k]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=40), label="cuts"))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert chunks_of(pieces) == WHOLE[k]
