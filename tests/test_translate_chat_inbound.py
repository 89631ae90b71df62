"""OpenAI Chat clients on Claude: request, response and stream translation, checked with the SDKs' own types."""

from __future__ import annotations

import json
import re
from pathlib import Path

import openai.types.chat as oc
import orjson
import pytest
from anthropic.types import Message
from openai.lib.streaming.chat import ChatCompletionStreamState

from bytespike.protocols.openai_chat.inbound import (
    CAVEATS,
    DEFAULT_MAX_TOKENS,
    DONE,
    ChatRequestError,
    MessagesToChatStream,
    chat_to_messages_request,
    message_to_chat_completion,
)
from bytespike.protocols.sse import SSEParser

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
OPENCODE = RECORDED / "anomalyco__opencode/packages/llm/test/fixtures/recordings/anthropic-messages"
SDK = RECORDED / "anthropics__anthropic-sdk-python/tests"
ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def recorded_streams() -> list[tuple[str, bytes]]:
    """Every successful Anthropic SSE recording: opencode cassettes and the Python SDK's raw streams."""
    out = []
    for path in sorted(OPENCODE.glob("*.json")):
        for n, interaction in enumerate(json.loads(path.read_text())["interactions"]):
            if interaction["response"]["status"] == 200:
                out.append((f"{path.stem}#{n}", interaction["response"]["body"].encode()))
    for pattern in ("lib/streaming/fixtures/*.txt", "fixtures/fable-fallback/*.sse"):
        for path in sorted(SDK.glob(pattern)):
            out.append((path.name, path.read_bytes()))
    return out


STREAMS = recorded_streams()
STREAM_IDS = [name for name, _ in STREAMS]


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    parser = SSEParser()
    events = parser.feed(raw) + parser.close()
    return [(e.event, orjson.loads(e.data)) for e in events]


def translate(events: list[tuple[str, dict]], include_usage: bool = True) -> list[dict]:
    stream = MessagesToChatStream(
        "gpt-client-name", include_usage, completion_id="chatcmpl-test", created=1700000000
    )
    chunks: list[dict] = []
    for event, data in events:
        chunks.extend(stream.feed(event, data))
    return chunks + stream.finish()


def reference(events: list[tuple[str, dict]]) -> dict:
    """What the recording says, read independently of the translator: text, thinking, client tool calls, usage."""
    text, thinking, calls, blocks = [], [], [], {}
    usage = {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    stop_reason, thinking_tokens, message_id = None, None, None

    def take_usage(u: dict | None) -> None:
        for key in usage:
            if u and u.get(key) is not None:
                usage[key] = u[key]

    for _, data in events:
        kind = data["type"]
        if kind == "message_start":
            message_id = data["message"]["id"]
            take_usage(data["message"].get("usage"))
        elif kind == "content_block_start":
            block = data["content_block"]
            blocks[data["index"]] = block["type"]
            if block["type"] == "tool_use":
                calls.append({"id": block["id"], "name": block["name"], "json": ""})
                blocks[data["index"]] = ("tool", len(calls) - 1)
        elif kind == "content_block_delta":
            delta, owner = data["delta"], blocks.get(data["index"])
            if delta["type"] == "text_delta" and owner == "text":
                text.append(delta["text"])
            elif delta["type"] == "thinking_delta" and owner == "thinking":
                thinking.append(delta["thinking"])
            elif delta["type"] == "input_json_delta" and isinstance(owner, tuple):
                calls[owner[1]]["json"] += delta["partial_json"]
        elif kind == "message_delta":
            stop_reason = data["delta"]["stop_reason"]
            take_usage(data["usage"])
            thinking_tokens = (data["usage"].get("output_tokens_details") or {}).get(
                "thinking_tokens", thinking_tokens
            )
    return {
        "id": message_id,
        "text": "".join(text),
        "thinking": "".join(thinking),
        "calls": calls,
        "stop_reason": stop_reason,
        "usage": usage,
        "thinking_tokens": thinking_tokens,
    }


def accumulate(chunks: list[dict]) -> oc.ChatCompletion:
    """The OpenAI SDK's own stream accumulator; every chunk must first pass its chunk type.

    The SDK's final parse refuses length and content_filter completions; those are read from the snapshot.
    """
    state: ChatCompletionStreamState = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(oc.ChatCompletionChunk.model_validate(chunk))
    snapshot = state.current_completion_snapshot
    refused = snapshot.choices[0].finish_reason in ("length", "content_filter")
    final = snapshot if refused else state.get_final_completion()
    return oc.ChatCompletion.model_validate(final.to_dict())


def reasoning(message: oc.ChatCompletionMessage) -> str:
    """reasoning_content is not an OpenAI field: the SDK keeps it as an extra."""
    return (message.model_extra or {}).get("reasoning_content", "")


def arguments_match(ours: str, recorded_json: str) -> bool:
    """Recorded argument text either parses (compare objects) or is cut short/invalid (compare verbatim)."""
    if not recorded_json:
        return json.loads(ours) == {}
    try:
        expected = json.loads(recorded_json)
    except json.JSONDecodeError:
        return ours == recorded_json
    return json.loads(ours) == expected


def expected_finish(ref: dict) -> str:
    reason = FINISH.get(ref["stop_reason"], "stop")
    if reason == "tool_calls" and not ref["calls"]:
        return "stop"
    return reason


def message_from(ref: dict) -> dict:
    """A non-streamed Message with the recording's content, as the API would have returned it."""
    content: list[dict] = []
    if ref["thinking"]:
        content.append({"type": "thinking", "thinking": ref["thinking"], "signature": "sig"})
    if ref["text"]:
        content.append({"type": "text", "text": ref["text"]})
    for call in ref["calls"]:
        content.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": call["name"],
                "input": json.loads(call["json"] or "{}"),
            }
        )
    usage = dict(ref["usage"])
    if ref["thinking_tokens"] is not None:
        usage["output_tokens_details"] = {"thinking_tokens": ref["thinking_tokens"]}
    message = {
        "id": ref["id"],
        "type": "message",
        "role": "assistant",
        "model": "claude-upstream",
        "content": content,
        "stop_reason": ref["stop_reason"],
        "stop_sequence": None,
        "usage": usage,
    }
    Message.model_validate(message)
    return message


def parses(text: str) -> bool:
    try:
        json.loads(text or "{}")
    except json.JSONDecodeError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Stream
# --------------------------------------------------------------------------------------------------


def test_recordings_are_found() -> None:
    assert len(STREAMS) >= 35
    assert any(name.startswith("claude-opus-4-7-drives-a-tool-loop") for name in STREAM_IDS)


@pytest.mark.parametrize("raw", [raw for _, raw in STREAMS], ids=STREAM_IDS)
def test_recorded_stream_accumulates_in_the_openai_sdk_to_what_was_recorded(raw: bytes) -> None:
    events = sse_events(raw)
    ref = reference(events)
    completion = accumulate(translate(events))
    choice = completion.choices[0]

    assert (choice.message.content or "") == ref["text"]
    assert reasoning(choice.message) == ref["thinking"]
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [(c["id"], c["name"]) for c in ref["calls"]]
    for ours, recorded in zip(calls, ref["calls"], strict=True):
        assert arguments_match(ours.function.arguments, recorded["json"])
    assert choice.finish_reason == expected_finish(ref)
    u = ref["usage"]
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens
        == u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    )
    assert completion.usage.completion_tokens == u["output_tokens"]
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + u["output_tokens"]
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == u["cache_read_input_tokens"]
    assert completion.model == "gpt-client-name"


@pytest.mark.parametrize("raw", [raw for _, raw in STREAMS], ids=STREAM_IDS)
def test_every_chunk_has_the_chat_chunk_envelope(raw: bytes) -> None:
    chunks = translate(sse_events(raw))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finishes = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] is not None]
    assert len(finishes) == 1 and finishes[0]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is not None
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-test"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 1700000000
        assert chunk["model"] == "gpt-client-name"
        assert chunk["system_fingerprint"] is None
        for choice in chunk["choices"]:
            assert choice["index"] == 0 and choice["logprobs"] is None
    assert all(c["usage"] is None for c in chunks[:-1])
    assert sum(1 for c in chunks if "role" in (c["choices"] or [{"delta": {}}])[0]["delta"]) == 1


def test_stream_without_include_usage_has_no_usage_field_or_usage_chunk() -> None:
    chunks = translate(
        sse_events((SDK / "lib/streaming/fixtures/basic_response.txt").read_bytes()), include_usage=False
    )
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello there!"


def test_usage_chunk_counts_cache_reads_and_writes_into_the_prompt() -> None:
    chunks = translate(
        sse_events((SDK / "lib/streaming/fixtures/message_delta_fields_response.txt").read_bytes())
    )
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 40 + 7 + 12,
        "completion_tokens": 8,
        "total_tokens": 67,
        "prompt_tokens_details": {"cached_tokens": 7, "cache_write_tokens": 12},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


def test_usage_from_message_start_survives_a_message_delta_without_it() -> None:
    chunks = translate(
        sse_events((SDK / "lib/streaming/fixtures/message_delta_omitted_usage_response.txt").read_bytes())
    )
    assert chunks[-1]["usage"]["prompt_tokens"] == 25 + 10 + 5
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_stream_usage_attribute_keeps_the_anthropic_counts() -> None:
    stream = MessagesToChatStream("m", include_usage=False)
    for event, data in sse_events(
        (SDK / "lib/streaming/fixtures/message_delta_fields_response.txt").read_bytes()
    ):
        stream.feed(event, data)
    assert stream.usage == {
        "input_tokens": 40,
        "output_tokens": 8,
        "cache_read_input_tokens": 7,
        "cache_creation_input_tokens": 12,
    }


def test_tool_call_indexes_count_tool_use_blocks_only() -> None:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"id": "msg_1", "usage": {"input_tokens": 3, "output_tokens": 0}},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "s"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking."}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "tool_use", "id": "toolu_a", "name": "a", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '{"x":1}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 3,
                "content_block": {"type": "tool_use", "id": "toolu_b", "name": "b", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 3,
                "delta": {"type": "input_json_delta", "partial_json": '{"y":'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 3,
                "delta": {"type": "input_json_delta", "partial_json": "2}"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 3}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    chunks = translate(events)
    fragments = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert fragments[0] == {
        "index": 0,
        "id": "toolu_a",
        "type": "function",
        "function": {"name": "a", "arguments": ""},
    }
    assert fragments[2] == {
        "index": 1,
        "id": "toolu_b",
        "type": "function",
        "function": {"name": "b", "arguments": ""},
    }
    assert [f["index"] for f in fragments] == [0, 0, 1, 1, 1]
    completion = accumulate(chunks)
    message = completion.choices[0].message
    assert reasoning(message) == "hmm"
    assert message.content == "Checking."
    assert [json.loads(c.function.arguments) for c in message.tool_calls or []] == [{"x": 1}, {"y": 2}]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_server_tool_blocks_do_not_become_client_tool_calls() -> None:
    chunks = translate(
        sse_events((SDK / "lib/streaming/fixtures/server_tool_result_response.txt").read_bytes())
    )
    message = accumulate(chunks).choices[0].message
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("tu_client_001", "ask_internal_tool", '{"query":"test"}')
    ]
    only_server = accumulate(
        translate(sse_events((SDK / "lib/streaming/fixtures/server_tool_use_response.txt").read_bytes()))
    )
    assert only_server.choices[0].message.tool_calls is None


def test_tool_call_streamed_without_arguments_gets_an_empty_object() -> None:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"id": "msg_1", "usage": {"input_tokens": 3, "output_tokens": 0}},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": ""},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    (call,) = accumulate(translate(events)).choices[0].message.tool_calls or []
    assert call.function.arguments == "{}"


def test_tool_json_cut_by_max_tokens_stays_partial_and_finishes_with_length() -> None:
    raw = (SDK / "lib/streaming/fixtures/incomplete_partial_json_response.txt").read_bytes()
    completion = accumulate(translate(sse_events(raw)))
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.arguments.endswith('\n"Filing taxes')
    assert completion.choices[0].finish_reason == "length"


def test_refusal_stream_finishes_with_content_filter() -> None:
    completion = accumulate(
        translate(sse_events((SDK / "lib/streaming/fixtures/refusal_response.txt").read_bytes()))
    )
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == ""


def test_thinking_stream_arrives_as_reasoning_content_with_reasoning_tokens() -> None:
    raw = (SDK / "fixtures/fable-fallback/stream-a-refusal.sse").read_bytes()
    chunks = translate(sse_events(raw))
    completion = accumulate(chunks)
    assert reasoning(completion.choices[0].message).startswith("Simple educational question")
    assert completion.choices[0].message.content == "Hi"
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 67}


def test_error_event_ends_the_stream_with_an_openai_error_payload() -> None:
    stream = MessagesToChatStream("m", include_usage=True, completion_id="chatcmpl-x")
    events = sse_events((SDK / "lib/streaming/fixtures/basic_response.txt").read_bytes())[:3]
    for event, data in events:
        stream.feed(event, data)
    out = stream.feed(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    assert out == [
        {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None}}
    ]
    assert stream.feed("content_block_stop", {"type": "content_block_stop", "index": 0}) == []
    assert stream.finish() == []


def test_fail_payload_carries_type_and_code() -> None:
    stream = MessagesToChatStream("m", include_usage=False)
    assert stream.fail("upstream timed out", "timeout_error", "timeout") == {
        "error": {"message": "upstream timed out", "type": "timeout_error", "param": None, "code": "timeout"}
    }


def test_unknown_events_and_blocks_are_ignored() -> None:
    stream = MessagesToChatStream("m", include_usage=False, completion_id="chatcmpl-x")
    assert stream.feed("mystery", {"type": "mystery", "x": 1}) == []
    stream.feed("message_start", {"type": "message_start", "message": {"id": "msg_1"}})
    assert (
        stream.feed(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "hologram"}},
        )
        == []
    )
    assert (
        stream.feed(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "hologram_delta", "x": "y"}},
        )
        == []
    )
    assert stream.feed("ping", {"type": "ping"}) == []


def test_completion_id_comes_from_the_message_id_when_not_given() -> None:
    stream = MessagesToChatStream("m", include_usage=False)
    (first,) = stream.feed("message_start", {"type": "message_start", "message": {"id": "msg_01abc"}})
    assert first["id"] == "chatcmpl-01abc"


def test_done_marker_is_the_openai_terminator() -> None:
    assert DONE == b"data: [DONE]\n\n"


# --------------------------------------------------------------------------------------------------
# Non-stream
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [raw for _, raw in STREAMS if all(parses(c["json"]) for c in reference(sse_events(raw))["calls"])],
    ids=[n for n, raw in STREAMS if all(parses(c["json"]) for c in reference(sse_events(raw))["calls"])],
)
def test_recorded_message_becomes_the_same_completion_the_stream_accumulates_to(raw: bytes) -> None:
    events = sse_events(raw)
    ref = reference(events)
    completion = message_to_chat_completion(message_from(ref), "gpt-client-name", created=1700000000)
    parsed = oc.ChatCompletion.model_validate(completion)
    streamed = accumulate(translate(events))

    assert parsed.id == "chatcmpl-" + ref["id"].removeprefix("msg_")
    assert parsed.object == "chat.completion" and parsed.model == "gpt-client-name"
    assert parsed.system_fingerprint is None
    ours, theirs = parsed.choices[0], streamed.choices[0]
    assert ours.message.content == (
        theirs.message.content if (theirs.message.content or not theirs.message.tool_calls) else None
    )
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in ours.message.tool_calls or []
    ] == [(c.id, c.function.name, json.loads(c.function.arguments)) for c in theirs.message.tool_calls or []]
    assert ours.finish_reason == theirs.finish_reason
    assert parsed.usage == streamed.usage


def test_message_with_thinking_text_and_two_tool_calls() -> None:
    msg = {
        "id": "msg_01XYZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [
            {"type": "thinking", "thinking": "Two cities, two calls.", "signature": "EqQBCg"},
            {"type": "text", "text": "Let me check both."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "get_weather",
                "input": {"city": "Paris", "unit": "c"},
            },
            {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Rome"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 100,
            "output_tokens": 50,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 0,
            "output_tokens_details": {"thinking_tokens": 12},
        },
    }
    out = message_to_chat_completion(
        msg, "claude-3-7-sonnet-20250219", completion_id="chatcmpl-given", created=5
    )
    oc.ChatCompletion.model_validate(out)
    assert out == {
        "id": "chatcmpl-given",
        "object": "chat.completion",
        "created": 5,
        "model": "claude-3-7-sonnet-20250219",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check both.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"c"}'},
                        },
                        {
                            "id": "toolu_02",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                        },
                    ],
                    "reasoning_content": "Two cities, two calls.",
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 1100,
            "completion_tokens": 50,
            "total_tokens": 1150,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 12},
        },
        "system_fingerprint": None,
    }


def test_message_with_only_tool_calls_has_null_content() -> None:
    msg = {
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    message = message_to_chat_completion(msg, "m")["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize(("stop_reason", "finish"), sorted(FINISH.items()))
def test_stop_reason_maps_to_finish_reason(stop_reason: str, finish: str) -> None:
    content = [{"type": "text", "text": "x"}]
    if stop_reason == "tool_use":
        content.append({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}})
    msg = {
        "id": "msg_1",
        "content": content,
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    out = message_to_chat_completion(msg, "m")
    oc.ChatCompletion.model_validate(out)
    assert out["choices"][0]["finish_reason"] == finish


def test_tool_use_stop_without_a_client_tool_call_finishes_with_stop() -> None:
    msg = {
        "id": "msg_1",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}}
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    out = message_to_chat_completion(msg, "m")
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["message"]["content"] == "" and "tool_calls" not in out["choices"][0]["message"]


def test_usage_reports_cache_writes_only_when_there_are_some() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 30,
    }
    out = message_to_chat_completion(
        {"id": "msg_1", "content": [], "stop_reason": "end_turn", "usage": usage}, "m"
    )
    assert out["usage"] == {
        "prompt_tokens": 40,
        "completion_tokens": 2,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 30},
    }


# --------------------------------------------------------------------------------------------------
# Request
# --------------------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}


def tool_loop_request() -> dict:
    return {
        "model": "claude-sonnet-4-6",
        "messages": [
            {"role": "system", "content": "Use the get_weather tool, then answer in one short sentence."},
            {"role": "user", "content": "What is the weather in Paris and in Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_Paris1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "functions.get_weather:1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_Paris1",
                "content": '{"temperature":22,"condition":"sunny"}',
            },
            {
                "role": "tool",
                "tool_call_id": "functions.get_weather:1",
                "content": [{"type": "text", "text": "25C, clear"}],
            },
            {"role": "user", "content": "Which one is warmer?"},
        ],
        "tools": [WEATHER_TOOL],
        "max_completion_tokens": 80,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_tool_loop_conversation_becomes_a_messages_request_with_results_right_after_calls() -> None:
    out = chat_to_messages_request(tool_loop_request(), "claude-sonnet-4-6")
    rome = out["messages"][1]["content"][1]["id"]
    assert ID_PATTERN.match(rome) and rome != "functions.get_weather:1"
    assert out == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 80,
        "system": [{"type": "text", "text": "Use the get_weather tool, then answer in one short sentence."}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is the weather in Paris and in Rome?"}],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_Paris1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": rome, "name": "get_weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_Paris1",
                        "content": '{"temperature":22,"condition":"sunny"}',
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": rome,
                        "content": [{"type": "text", "text": "25C, clear"}],
                    },
                    {"type": "text", "text": "Which one is warmer?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Get current weather for a city.",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ],
        "stream": True,
    }


def test_recorded_opencode_tool_loop_request_is_reproduced_from_its_openai_shape() -> None:
    """The second turn of the real Claude tool loop, asked in Chat shape, gives the recorded Messages body."""
    cassette = json.loads((OPENCODE / "claude-opus-4-7-drives-a-tool-loop.json").read_text())
    recorded = json.loads(cassette["interactions"][1]["request"]["body"])
    chat = {
        "messages": [
            {"role": "system", "content": recorded["system"][0]["text"]},
            {"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_01M8nJQQMxqpv1VaPYuJKT4j",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "toolu_01M8nJQQMxqpv1VaPYuJKT4j",
                "content": '{"temperature":22,"condition":"sunny"}',
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get current weather for a city.",
                    "parameters": recorded["tools"][0]["input_schema"],
                },
            }
        ],
        "stream": True,
        "max_tokens": 80,
    }
    out = chat_to_messages_request(chat, "claude-opus-4-7")
    assert out == recorded


def test_system_and_developer_messages_anywhere_are_hoisted_in_order() -> None:
    out = chat_to_messages_request(
        {
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "A"}]},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "system", "content": "B"},
                {"role": "user", "content": "again"},
            ]
        },
        "m",
    )
    assert out["system"] == [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    assert [t["role"] for t in out["messages"]] == ["user", "assistant", "user"]


def test_consecutive_same_role_messages_merge_and_a_leading_assistant_gets_a_user_turn() -> None:
    out = chat_to_messages_request(
        {
            "messages": [
                {"role": "assistant", "content": "Hi, how can I help?"},
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
            ]
        },
        "m",
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "..."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi, how can I help?"}]},
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
    ]


def test_tool_results_come_before_user_text_even_when_sent_after_it() -> None:
    req = tool_loop_request()
    msgs = req["messages"]
    msgs[3], msgs[4], msgs[5] = msgs[5], msgs[3], msgs[4]  # user text between the calls and their results
    out = chat_to_messages_request(req, "m")
    kinds = [b["type"] for b in out["messages"][2]["content"]]
    assert kinds == ["tool_result", "tool_result", "text"]


def test_text_after_tool_calls_in_merged_assistant_turns_moves_before_the_calls() -> None:
    req = tool_loop_request()
    req["messages"].insert(3, {"role": "assistant", "content": "Checking both."})
    out = chat_to_messages_request(req, "m")
    assert [b["type"] for b in out["messages"][1]["content"]] == ["text", "tool_use", "tool_use"]


def test_tool_result_answering_no_call_becomes_text() -> None:
    out = chat_to_messages_request(
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "tool", "tool_call_id": "call_gone", "content": "42"},
            ]
        },
        "m",
    )
    assert out["messages"][2] == {
        "role": "user",
        "content": [{"type": "text", "text": "Result of tool call call_gone:\n42"}],
    }


def test_history_with_tool_calls_but_no_tools_declares_them_and_calls_none() -> None:
    req = tool_loop_request()
    del req["tools"]
    out = chat_to_messages_request(req, "m")
    assert out["tools"] == [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
    assert out["tool_choice"] == {"type": "none"}


def test_unanswered_tool_call_is_rejected_with_its_param() -> None:
    req = tool_loop_request()
    del req["messages"][4]
    with pytest.raises(ChatRequestError) as exc:
        chat_to_messages_request(req, "m")
    assert exc.value.param == "messages[2].tool_calls[1]"
    assert "functions_get_weather_1" in exc.value.message


def test_ids_differing_only_in_rejected_characters_stay_distinct_and_paired() -> None:
    calls = [
        {"id": i, "type": "function", "function": {"name": "now", "arguments": "{}"}}
        for i in ("call.1", "call:1", "call_1")
    ]
    req = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            *({"role": "tool", "tool_call_id": c["id"], "content": c["id"]} for c in reversed(calls)),
        ]
    }
    out = chat_to_messages_request(req, "m")
    uses = [b["id"] for b in out["messages"][1]["content"]]
    assert len(set(uses)) == 3 and all(ID_PATTERN.match(u) for u in uses) and uses[2] == "call_1"
    results = {b["content"]: b["tool_use_id"] for b in out["messages"][2]["content"]}
    assert [results[c["id"]] for c in calls] == uses


def test_non_json_tool_arguments_are_rejected_with_their_param() -> None:
    req = tool_loop_request()
    req["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"city": Paris}'
    with pytest.raises(ChatRequestError) as exc:
        chat_to_messages_request(req, "m")
    assert exc.value.param == "messages[2].tool_calls[0].function.arguments"
    assert "not valid JSON" in exc.value.message


def test_empty_tool_arguments_become_an_empty_input() -> None:
    req = tool_loop_request()
    req["messages"][2]["tool_calls"][0]["function"]["arguments"] = ""
    out = chat_to_messages_request(req, "m")
    assert out["messages"][1]["content"][0]["input"] == {}


@pytest.mark.parametrize(
    ("req", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "huge"}, "reasoning_effort"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "custom", "custom": {"name": "x"}}],
            },
            "tools[0].type",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": "sometimes",
                "tools": [WEATHER_TOOL],
            },
            "tool_choice",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        (
            {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}},
            "response_format.type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]},
            "messages[0].content[0].file.file_id",
        ),
    ],
)
def test_invalid_requests_raise_chat_request_error_naming_the_field(req: dict, param: str) -> None:
    with pytest.raises(ChatRequestError) as exc:
        chat_to_messages_request(req, "m")
    assert exc.value.param == param
    assert exc.value.message


def test_images_become_base64_or_url_sources_and_pdfs_become_documents() -> None:
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "spec.pdf"},
        },
        {"type": "file", "file": {"file_data": "data:text/plain;base64,aGVsbG8="}},
    ]
    out = chat_to_messages_request({"messages": [{"role": "user", "content": content}]}, "m")
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
            "title": "spec.pdf",
        },
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}},
    ]


@pytest.mark.parametrize(
    "url",
    [
        "data:image/tiff;base64,AAAA",
        "data:image/png,rawbytes",
        "ftp://example.com/x.png",
        "file:///etc/passwd",
    ],
)
def test_unsendable_images_are_rejected(url: str) -> None:
    with pytest.raises(ChatRequestError) as exc:
        chat_to_messages_request(
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]},
            "m",
        )
    assert exc.value.param == "messages[0].content[0].image_url.url"


def test_tools_get_an_input_schema_and_lose_strict() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    out = chat_to_messages_request(
        {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL, bare]}, "m"
    )
    assert out["tools"][1] == {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    assert "strict" not in out["tools"][0] and "tool_choice" not in out


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tool_choice_and_parallel_tool_calls_map(
    choice: object, parallel: bool | None, expected: dict
) -> None:
    req: dict = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": choice,
    }
    if parallel is not None:
        req["parallel_tool_calls"] = parallel
    assert chat_to_messages_request(req, "m")["tool_choice"] == expected


def test_allowed_tools_narrows_the_declared_tools() -> None:
    other = {"type": "function", "function": {"name": "other"}}
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "other"}}]},
    }
    out = chat_to_messages_request(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER_TOOL, other],
            "tool_choice": choice,
        },
        "m",
    )
    assert [t["name"] for t in out["tools"]] == ["other"]
    assert out["tool_choice"] == {"type": "any"}


def test_sampling_limits_and_metadata() -> None:
    req = {
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 10,
        "max_completion_tokens": 300,
        "stop": ["END", "  ", "STOP"],
        "temperature": 1.7,
        "top_p": 0.9,
        "user": "user-42",
        "seed": 7,
        "logprobs": True,
        "presence_penalty": 1,
    }
    out = chat_to_messages_request(req, "m")
    assert out["max_tokens"] == 300
    assert out["stop_sequences"] == ["END", "STOP"]
    assert out["temperature"] == 1.0 and "top_p" not in out
    assert out["metadata"] == {"user_id": "user-42"}
    for dropped in ("seed", "logprobs", "presence_penalty", "user", "n"):
        assert dropped not in out
    only_top_p = chat_to_messages_request(
        {"messages": [{"role": "user", "content": "x"}], "top_p": 0.5, "stop": "END"}, "m"
    )
    assert only_top_p["top_p"] == 0.5 and only_top_p["stop_sequences"] == ["END"]
    assert (
        chat_to_messages_request({"messages": [{"role": "user", "content": "x"}], "temperature": -1}, "m")[
            "temperature"
        ]
        == 0.0
    )


def test_max_tokens_defaults_when_absent() -> None:
    assert (
        chat_to_messages_request({"messages": [{"role": "user", "content": "x"}]}, "m")["max_tokens"]
        == DEFAULT_MAX_TOKENS
        == 4096
    )


@pytest.mark.parametrize(
    ("effort", "budget"), [("low", 1024), ("medium", 2048), ("high", 4096), ("xhigh", 8192), ("max", 16384)]
)
def test_reasoning_effort_becomes_a_thinking_budget_below_max_tokens(effort: str, budget: int) -> None:
    req = {
        "messages": [{"role": "user", "content": "x"}],
        "reasoning_effort": effort,
        "max_completion_tokens": 2000,
        "temperature": 0.2,
        "top_p": 0.3,
    }
    out = chat_to_messages_request(req, "m")
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] > budget
    assert out["max_tokens"] == (2000 if budget < 2000 else 2000 + budget)
    assert "temperature" not in out and "top_p" not in out


@pytest.mark.parametrize("effort", ["none", "minimal"])
def test_minimal_reasoning_effort_leaves_thinking_off(effort: str) -> None:
    out = chat_to_messages_request(
        {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort, "temperature": 0.5}, "m"
    )
    assert "thinking" not in out and out["temperature"] == 0.5


def test_thinking_stays_off_when_a_tool_is_forced_or_a_tool_loop_continues() -> None:
    forced = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "reasoning_effort": "high",
    }
    assert "thinking" not in chat_to_messages_request(forced, "m")
    loop = tool_loop_request()
    del loop["messages"][5]
    loop["reasoning_effort"] = "high"
    assert "thinking" not in chat_to_messages_request(loop, "m")
    loop["messages"].append({"role": "user", "content": "and tomorrow?"})
    assert "thinking" not in chat_to_messages_request(loop, "m"), (
        "results and text share the turn being continued"
    )
    fresh = tool_loop_request()
    fresh["messages"] += [{"role": "assistant", "content": "Rome."}, {"role": "user", "content": "Thanks!"}]
    fresh["reasoning_effort"] = "high"
    assert chat_to_messages_request(fresh, "m")["thinking"]["budget_tokens"] == 4096


def test_response_format_json_schema_goes_to_output_config_and_json_object_to_system() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    out = chat_to_messages_request(
        {"messages": [{"role": "user", "content": "x"}], "response_format": fmt}, "m"
    )
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    out = chat_to_messages_request(
        {
            "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        },
        "m",
    )
    assert out["system"][0] == {"type": "text", "text": "S"}
    assert "JSON" in out["system"][1]["text"] and "output_config" not in out


def test_blank_text_is_dropped_and_a_prefill_loses_trailing_whitespace() -> None:
    out = chat_to_messages_request(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "  "}, {"type": "text", "text": "go"}]},
                {"role": "assistant", "content": "Sure:  \n"},
            ]
        },
        "m",
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Sure:"}]},
    ]


def test_legacy_functions_and_function_messages_map_like_tools() -> None:
    req = {
        "messages": [
            {"role": "user", "content": "time?"},
            {"role": "assistant", "content": None, "function_call": {"name": "now", "arguments": "{}"}},
            {"role": "function", "name": "now", "content": "12:00"},
        ],
        "functions": [{"name": "now", "parameters": {"type": "object", "properties": {}}}],
        "function_call": {"name": "now"},
    }
    out = chat_to_messages_request(req, "m")
    call_id = out["messages"][1]["content"][0]["id"]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": call_id, "content": "12:00"}
    ]
    assert out["tool_choice"] == {"type": "tool", "name": "now"}


def test_request_translation_does_not_touch_the_client_request() -> None:
    req = tool_loop_request()
    snapshot = orjson.dumps(req)
    chat_to_messages_request(req, "m")
    assert orjson.dumps(req) == snapshot


def test_caveats_name_what_is_dropped() -> None:
    text = " ".join(CAVEATS)
    for word in ("logprobs", "n > 1", "temperature", "reasoning_content", "json_object"):
        assert word in text
