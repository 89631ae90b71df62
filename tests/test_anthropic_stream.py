"""The Anthropic stream builder, and the stream invariant checker the translator tests rely on.

``check_stream`` encodes PROTOCOLS.md section 8; it is itself tested against real Anthropic
streams (accepted) and broken ones (rejected).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event

from bytespike.protocols.anthropic.builder import MessageStreamBuilder
from bytespike.protocols.hub import STOP_REASONS, drop_gateway_thinking, gateway_signature
from bytespike.protocols.sse import SSEParser, frame

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
ANTHROPIC_SDK = RECORDED / "anthropics__anthropic-sdk-python" / "tests"
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
DELTA_FOR = {
    "text": {"text_delta", "citations_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
    "server_tool_use": {"input_json_delta"},
}

Event = tuple[str, dict[str, Any]]


def check_stream(events: list[Event], strict: bool = True) -> None:
    """Assert the Anthropic stream invariants (PROTOCOLS.md section 8).

    ``strict`` adds what the gateway promises beyond what Anthropic itself does: no empty text or
    thinking deltas, and a tool_use stop_reason whenever a tool_use block was emitted.
    """
    assert events, "empty stream"
    events = [(name, data) for name, data in events if name != "ping"]
    for name, data in events:
        assert name == data.get("type"), f"event name {name!r} differs from data.type {data.get('type')!r}"
    name, first = events[0]
    assert name == "message_start", f"first event is {name}"
    message = first["message"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [] and message["stop_reason"] is None
    for key in ("input_tokens", "output_tokens"):
        assert isinstance(message["usage"].get(key), int), f"message_start usage.{key} not an int"

    blocks: list[dict[str, Any]] = []
    json_parts: dict[int, list[str]] = {}
    open_index: int | None = None
    stop_reason: str | None = None
    ended = False
    for position, (name, data) in enumerate(events[1:], start=1):
        assert not ended, f"{name} after the end of the stream"
        if name == "error":
            assert isinstance(data["error"]["type"], str) and isinstance(data["error"]["message"], str)
            assert position == len(events) - 1, "events after error"
            return
        assert stop_reason is None or name == "message_stop", f"{name} after message_delta"
        if name == "content_block_start":
            assert open_index is None, f"block {data['index']} starts while block {open_index} is open"
            assert data["index"] == len(blocks), f"index {data['index']} where {len(blocks)} was due"
            block = data["content_block"]
            if block["type"] == "tool_use":
                assert TOOL_ID.match(block["id"]), f"tool_use id {block['id']!r}"
                assert block["input"] == {} and block["name"]
                json_parts[data["index"]] = []
            blocks.append(block)
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index, f"delta for block {data['index']}, open is {open_index}"
            kind = blocks[data["index"]]["type"]
            delta = data["delta"]
            if kind in DELTA_FOR:
                assert delta["type"] in DELTA_FOR[kind], f"{delta['type']} into a {kind} block"
            if strict and delta["type"] in ("text_delta", "thinking_delta"):
                assert delta[delta["type"].removesuffix("_delta")], f"empty {delta['type']}"
            if delta["type"] == "input_json_delta":
                json_parts[data["index"]].append(delta["partial_json"])
        elif name == "content_block_stop":
            assert data["index"] == open_index, f"stop for block {data['index']}, open is {open_index}"
            open_index = None
        elif name == "message_delta":
            if open_index is not None:
                assert data["delta"]["stop_reason"] == "max_tokens", "message_delta while a block is open"
                open_index = None
            stop_reason = data["delta"]["stop_reason"]
            assert stop_reason in STOP_REASONS, f"stop_reason {stop_reason!r}"
            assert isinstance(data["usage"]["output_tokens"], int)
        elif name == "message_stop":
            assert stop_reason is not None, "message_stop without message_delta"
            ended = True
        else:
            raise AssertionError(f"unexpected event {name}")
    assert ended, "stream did not end with message_stop"
    for index, parts in json_parts.items():
        joined = "".join(parts)
        if stop_reason == "max_tokens" and index == len(blocks) - 1:
            continue
        try:
            value = orjson.loads(joined or "{}")
        except orjson.JSONDecodeError:
            raise AssertionError(f"tool input of block {index} is not valid JSON: {joined!r}") from None
        assert isinstance(value, dict), f"tool input of block {index} is not an object"
    if strict:
        used = any(b["type"] == "tool_use" for b in blocks)
        assert (stop_reason == "tool_use") == used or stop_reason == "max_tokens", (
            f"stop_reason {stop_reason} with tool_use blocks: {used}"
        )


def accumulate(events: list[Event]) -> dict[str, Any]:
    """The final message as the Anthropic SDK's own accumulator builds it from the events."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    return snapshot.model_dump(exclude_none=True)


def reparse(events: list[Event]) -> list[Event]:
    """Frame events as SSE bytes and parse them back: what a client reads off the wire."""
    wire = b"".join(frame(name, data) for name, data in events)
    parser = SSEParser()
    parsed = parser.feed(wire) + parser.close()
    return [(e.event, orjson.loads(e.data)) for e in parsed]


def recorded_anthropic(path: Path) -> list[Event]:
    parser = SSEParser()
    parsed = parser.feed(path.read_bytes()) + parser.close()
    return [(e.event, orjson.loads(e.data)) for e in parsed]


# --- the checker against real streams ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "lib/streaming/fixtures/basic_response.txt",
        "lib/streaming/fixtures/tool_use_response.txt",
        "lib/streaming/fixtures/refusal_response.txt",
        "lib/streaming/fixtures/incomplete_partial_json_response.txt",
        "fixtures/fable-fallback/stream-a-refusal.sse",
    ],
)
def test_checker_accepts_recorded_anthropic_streams(name: str) -> None:
    check_stream(recorded_anthropic(ANTHROPIC_SDK / name), strict=False)


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("lib/streaming/fixtures/out_of_order_response.txt", "index 1 where 0 was due"),
        (
            "lib/streaming/fixtures/tool_use_invalid_json_response.txt",
            "tool input of block 1 is not valid JSON",
        ),
    ],
)
def test_checker_rejects_broken_recorded_streams(name: str, complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        check_stream(recorded_anthropic(ANTHROPIC_SDK / name), strict=False)


def test_checker_rejects_an_empty_thinking_delta_in_strict_mode() -> None:
    events = recorded_anthropic(ANTHROPIC_SDK / "fixtures/fable-fallback/stream-a-refusal.sse")
    with pytest.raises(AssertionError, match="empty thinking_delta"):
        check_stream(events)


def test_checker_rejects_a_delta_of_the_wrong_kind() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    events = b.text("hi")
    events.append(
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "x"}},
        )
    )
    events += b.finish("end_turn")
    with pytest.raises(AssertionError, match="thinking_delta into a text block"):
        check_stream(events)


# --- the builder --------------------------------------------------------------------------------


def test_blocks_open_one_at_a_time_with_contiguous_indexes() -> None:
    b = MessageStreamBuilder("claude-x", "msg_1", default_signature="sig")
    events = b.start(
        {
            "input_tokens": 5,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    )
    events += b.thinking("hmm") + b.text("Hello") + b.text(" world")
    events += b.tool_use("toolu_1", "get_weather", '{"city":') + b.tool_input(' "Paris"}')
    events += b.text("after") + b.finish(
        "end_turn",
        {
            "input_tokens": 5,
            "output_tokens": 9,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    )
    check_stream(events)
    names = [n for n, _ in events]
    assert names.count("content_block_start") == 4 == names.count("content_block_stop")
    final = accumulate(reparse(events))
    assert [c["type"] for c in final["content"]] == ["thinking", "text", "tool_use", "text"]
    assert final["content"][0] == {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    assert final["content"][2]["input"] == {"city": "Paris"}
    assert final["stop_reason"] == "tool_use"
    assert final["usage"]["output_tokens"] == 9 and final["usage"]["input_tokens"] == 5
    assert b.message()["content"] == final["content"]


def test_stop_reason_is_tool_use_whenever_a_tool_was_called() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    events = b.tool_use("toolu_1", "f", "{}") + b.finish("end_turn")
    check_stream(events)
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_stop_reason_tool_use_without_a_tool_becomes_end_turn() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    events = b.text("no tools here") + b.finish("tool_use")
    check_stream(events)
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_max_tokens_in_the_middle_of_tool_arguments_stays_max_tokens() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    events = b.tool_use("toolu_1", "f", '{"a": "unfinis') + b.finish("max_tokens")
    check_stream(events)
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert b.message()["content"][0]["input"] == {"_unparsed_arguments": '{"a": "unfinis'}


def test_signature_seals_the_open_thinking_block_and_the_next_thinking_opens_a_new_one() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    events = b.thinking("a") + b.signature("s1") + b.thinking("b") + b.signature("s2") + b.finish("end_turn")
    check_stream(events)
    final = accumulate(events)
    assert final["content"] == [
        {"type": "thinking", "thinking": "a", "signature": "s1"},
        {"type": "thinking", "thinking": "b", "signature": "s2"},
    ]


def test_a_lone_signature_makes_an_empty_signed_thinking_block() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    events = b.signature("only-sig") + b.finish("end_turn")
    check_stream(events)
    assert accumulate(events)["content"] == [{"type": "thinking", "thinking": "", "signature": "only-sig"}]


def test_empty_pieces_open_no_block() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    assert b.start() != []
    assert b.text("") == [] and b.thinking("") == [] and b.tool_input("x") == []
    events = b.finish("end_turn")
    assert [n for n, _ in events] == ["message_delta", "message_stop"]


def test_error_ends_the_stream_without_message_stop_and_nothing_follows() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    events = b.text("partial") + b.error("overloaded_error", "Overloaded")
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    assert b.text("more") == [] and b.finish("end_turn") == [] and b.error("api_error", "again") == []
    check_stream(events)
    assert "message_stop" not in [n for n, _ in events]


def test_nothing_is_emitted_after_message_stop() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    events = b.text("x") + b.finish("end_turn")
    assert b.text("late") == [] and b.tool_use("t", "f") == [] and b.finish("end_turn") == []
    check_stream(events)


def test_frames_survive_the_wire_with_event_names_matching_types() -> None:
    b = MessageStreamBuilder("m", "msg_1")
    events = b.text("héllo\nworld") + b.tool_use("toolu_1", "f", '{"q": "\\u00e9"}') + b.finish("end_turn")
    assert reparse(events) == events


def test_gateway_signed_thinking_is_dropped_before_a_claude_upstream() -> None:
    ours = {"type": "thinking", "thinking": "", "signature": gateway_signature("gemini-next", "c2ln")}
    claude = {"type": "thinking", "thinking": "real", "signature": "EqQBCkgIARAB"}
    tool = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    req = {
        "model": "claude-sonnet-4-6",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [ours, tool]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
            {"role": "assistant", "content": [claude, {"type": "text", "text": "done"}]},
        ],
    }
    cleaned = drop_gateway_thinking(req)
    assert cleaned is not None
    assert cleaned["messages"][1]["content"] == [tool]
    assert cleaned["messages"][3]["content"] == [claude, {"type": "text", "text": "done"}]
    assert req["messages"][1]["content"] == [ours, tool]
    assert drop_gateway_thinking(cleaned) is None
