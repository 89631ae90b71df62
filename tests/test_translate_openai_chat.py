"""Anthropic Messages <-> OpenAI Chat Completions, checked against recorded OpenAI, DeepSeek and
OpenRouter traffic.

Requests: each recorded Chat request is rebuilt as the Messages request a client would send for
it, translated back with ``to_chat_request`` and compared with the recording. Streams: each
recorded response is replayed through ``ChatStreamTranslator``; the events must satisfy the stream
invariants and describe the same content as the OpenAI SDK's own accumulation of the chunks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from bytespike.protocols.hub import gateway_signature, read_gateway_signature
from bytespike.protocols.openai_chat.upstream import (
    CAVEATS,
    DEEPSEEK,
    GENERIC,
    OPENAI_GPT5,
    ChatDialect,
    ChatStreamTranslator,
    chat_tool_names,
    from_chat_response,
    to_chat_request,
)
from bytespike.protocols.sse import SSEParser
from test_anthropic_stream import accumulate, check_stream, reparse

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
CASSETTES = RECORDED / "anomalyco__opencode" / "packages" / "llm" / "test" / "fixtures" / "recordings"
CHAT_CASSETTES = sorted(
    [*CASSETTES.glob("openai-chat/*.json"), *CASSETTES.glob("openai-compatible-chat/*.json")]
)
RAW_STREAMS = sorted((RECORDED / "openai__openai-python" / ".inline-snapshot" / "external").glob("*.bin"))
DIALECTS = {"deepseek": DEEPSEEK}
"""Recordings made through an upstream with its own dialect; the rest are plain Chat servers."""


def interactions() -> list[tuple[str, dict[str, Any], bytes]]:
    """(name, recorded request body, recorded response bytes) for every Chat interaction."""
    out = []
    for path in CHAT_CASSETTES:
        cassette = json.loads(path.read_text())
        for i, item in enumerate(cassette["interactions"]):
            name = f"{path.parent.name}/{path.stem}#{i}"
            out.append((name, json.loads(item["request"]["body"]), item["response"]["body"].encode()))
    return out


def recorded_streams() -> list[tuple[str, bytes]]:
    return [(name, raw) for name, _, raw in interactions()] + [
        (p.name[:12], p.read_bytes()) for p in RAW_STREAMS
    ]


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    parser = SSEParser()
    events = parser.feed(raw) + parser.close()
    return [orjson.loads(e.data) for e in events if e.data and e.data != "[DONE]"]


def translate_stream(chunks: list[dict[str, Any]], **kwargs: Any) -> tuple[list, ChatStreamTranslator]:
    translator = ChatStreamTranslator("client-model", "msg_test", **kwargs)
    events = []
    for chunk in chunks:
        events += translator.feed(chunk)
    events += translator.finish(done=True)
    return events, translator


def anthropic_from_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The Messages request a client would send to get ``body`` upstream (the recorded subset:
    system, user text, assistant tool calls, tool results, tools, tool_choice, sampling)."""
    req: dict[str, Any] = {"model": "client-model", "max_tokens": body["max_tokens"], "messages": []}
    for msg in body["messages"]:
        if msg["role"] == "system":
            req["system"] = msg["content"]
        elif msg["role"] == "user":
            req["messages"].append({"role": "user", "content": msg["content"]})
        elif msg["role"] == "assistant":
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": msg["content"]}] if msg.get("content") else []
            )
            for call in msg.get("tool_calls") or ():
                fn = call["function"]
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call["id"],
                        "name": fn["name"],
                        "input": json.loads(fn["arguments"]),
                    }
                )
            req["messages"].append({"role": "assistant", "content": blocks})
        elif msg["role"] == "tool":
            result = {"type": "tool_result", "tool_use_id": msg["tool_call_id"], "content": msg["content"]}
            last = req["messages"][-1]
            if last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(result)
            else:
                req["messages"].append({"role": "user", "content": [result]})
    if "tools" in body:
        req["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"]["description"],
                "input_schema": t["function"]["parameters"],
            }
            for t in body["tools"]
        ]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        req["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    elif choice is not None:
        req["tool_choice"] = {"type": {"required": "any"}.get(choice, choice)}
    for key in ("temperature", "top_p", "stream"):
        if key in body:
            req[key] = body[key]
    return req


def expected_from_sdk(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What the final message must hold, from the OpenAI SDK's accumulation of the same chunks."""
    state = ChatCompletionStreamState()
    for chunk in chunks:
        if chunk.get("service_tier") not in (None, "auto", "default", "flex", "scale", "priority"):
            chunk = {k: v for k, v in chunk.items() if k != "service_tier"}
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    snapshot = state.current_completion_snapshot
    choice = next(c for c in snapshot.choices if c.index == 0)
    message = choice.message
    content: list[dict[str, Any]] = []
    text = (message.content or "") + (message.refusal or "")
    if text:
        content.append({"type": "text", "text": text})
    for call in message.tool_calls or ():
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": json.loads(call.function.arguments or "{}"),
            }
        )
    if message.tool_calls:
        stop = "tool_use"
    elif message.refusal:
        stop = "refusal"
    else:
        stop = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}[choice.finish_reason]
    usage = snapshot.usage
    return {
        "content": content,
        "stop_reason": stop,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
    }


# --- recorded requests -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "body", "raw"), interactions(), ids=[i[0] for i in interactions()])
def test_recorded_chat_request_is_what_the_equivalent_messages_request_translates_to(
    name: str, body: dict[str, Any], raw: bytes
) -> None:
    dialect = next((d for key, d in DIALECTS.items() if key in name), GENERIC)
    ours = to_chat_request(anthropic_from_chat(body), body["model"], dialect)
    if dialect is DEEPSEEK:
        # The recording leaves DeepSeek's thinking switch at its default; a Messages request without
        # `thinking` means no thinking, so we send it explicitly. Nothing else differs.
        assert ours.pop("thinking") == {"type": "disabled"}
    assert ours == body


# --- recorded streams --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "raw"), recorded_streams(), ids=[s[0] for s in recorded_streams()])
def test_recorded_chat_stream_becomes_a_well_formed_anthropic_stream_with_the_same_content(
    name: str, raw: bytes
) -> None:
    chunks = chunks_of(raw)
    events, translator = translate_stream(chunks)
    check_stream(events)
    final = accumulate(reparse(events))
    expected = expected_from_sdk(chunks)
    assert [{k: v for k, v in c.items() if k != "id"} for c in final["content"]] == [
        {k: v for k, v in c.items() if k != "id"} for c in expected["content"]
    ]
    assert [c.get("id") for c in final["content"] if c["type"] == "tool_use"] == [
        c["id"] for c in expected["content"] if c["type"] == "tool_use"
    ]
    assert final["stop_reason"] == expected["stop_reason"]
    usage = final["usage"]
    assert (
        usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
        == expected["prompt_tokens"]
    )
    assert usage["output_tokens"] == expected["completion_tokens"]
    assert translator.completed and translator.usage == {k: usage[k] for k in translator.usage}
    assert final["model"] == "client-model" and final["id"] == "msg_test"


def test_forced_tool_call_with_finish_reason_stop_reports_tool_use() -> None:
    raw = next(r for n, _, r in interactions() if n == "openai-chat/streams-tool-call#0")
    assert b'"finish_reason":"stop"' in raw
    events, _ = translate_stream(chunks_of(raw))
    final = accumulate(events)
    assert final["stop_reason"] == "tool_use"
    assert final["content"] == [
        {
            "type": "tool_use",
            "id": "call_5wBV98AvGPwOyC6a2HtKh85w",
            "name": "get_weather",
            "input": {"city": "Paris"},
        }
    ]


def test_streamed_argument_fragments_become_one_input_json_delta_each() -> None:
    raw = next(r for n, _, r in interactions() if n == "openai-chat/streams-tool-call#0")
    events, _ = translate_stream(chunks_of(raw))
    deltas = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert deltas == ['{"', "city", '":"', "Paris", '"}']


def test_usage_chunk_after_the_finish_chunk_lands_in_message_delta() -> None:
    raw = next(r for n, _, r in interactions() if n == "openai-chat/streams-text#0")
    events, _ = translate_stream(chunks_of(raw))
    start = events[0][1]["message"]["usage"]
    delta = next(d for n, d in events if n == "message_delta")["usage"]
    assert start["input_tokens"] == 0
    assert delta == {
        "input_tokens": 22,
        "output_tokens": 2,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def test_openrouter_repeated_finish_chunk_ends_the_message_once_with_usage() -> None:
    raw = next(
        r
        for n, _, r in interactions()
        if n.startswith("openai-compatible-chat/openrouter-claude") and n.endswith("#0")
    )
    translator = ChatStreamTranslator("client-model", "msg_test")
    events = []
    for chunk in chunks_of(raw):
        events += translator.feed(chunk)
    assert translator.completed
    assert [n for n, _ in events].count("message_stop") == 1 and events[-1][0] == "message_stop"
    assert translator.finish(done=True) == []
    assert events[-2][1]["usage"]["input_tokens"] == 802 and events[-2][1]["usage"]["output_tokens"] == 66


def test_cache_reads_and_writes_are_split_out_of_input_tokens() -> None:
    chunks = [
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]},
        {
            "id": "c1",
            "choices": [],
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 300},
            },
        },
    ]
    events, _ = translate_stream(chunks)
    usage = accumulate(events)["usage"]
    assert (
        usage["input_tokens"],
        usage["cache_read_input_tokens"],
        usage["cache_creation_input_tokens"],
    ) == (100, 600, 300)


def test_stream_without_finish_reason_closes_cleanly_but_is_not_completed() -> None:
    raw = next(r for n, _, r in interactions() if n == "openai-chat/streams-text#0")
    chunks = chunks_of(raw)[:3]
    translator = ChatStreamTranslator("client-model", "msg_test")
    events = [e for c in chunks for e in translator.feed(c)]
    events += translator.finish()
    check_stream(events, strict=False)
    assert not translator.completed
    assert events[-1][0] == "message_stop"


def test_finish_reason_without_usage_is_completed_only_after_done() -> None:
    translator = ChatStreamTranslator("m", "msg_1")
    translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]})
    assert not translator.completed
    translator.finish(done=True)
    assert translator.completed


def test_mid_stream_failure_ends_with_an_error_event() -> None:
    raw = next(r for n, _, r in interactions() if n == "openai-chat/streams-text#0")
    translator = ChatStreamTranslator("client-model", "msg_test")
    events = [e for c in chunks_of(raw)[:3] for e in translator.feed(c)]
    events += translator.fail("api_error", "upstream connection reset")
    check_stream(events)
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "upstream connection reset"}},
    )
    assert translator.finish() == [] and not translator.completed


def test_upstream_error_object_mid_stream_becomes_an_error_event() -> None:
    translator = ChatStreamTranslator("m", "msg_1")
    events = translator.feed({"choices": [{"index": 0, "delta": {"content": "par"}}]})
    events += translator.feed({"error": {"message": "The server had an error", "type": "server_error"}})
    check_stream(events)
    assert events[-1][0] == "error" and "server had an error" in events[-1][1]["error"]["message"]


def test_tool_name_and_whole_arguments_in_one_chunk_give_a_start_and_one_delta() -> None:
    chunk = {
        "id": "x",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ]
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    events, _ = translate_stream([chunk])
    check_stream(events)
    kinds = [(n, d.get("delta", {}).get("type")) for n, d in events if n.startswith("content_block")]
    assert kinds == [
        ("content_block_start", None),
        ("content_block_delta", "input_json_delta"),
        ("content_block_stop", None),
    ]


def test_parallel_tool_calls_become_consecutive_tool_use_blocks() -> None:
    raw = next(p for p in RAW_STREAMS if p.name.startswith("f82268f2")).read_bytes()
    events, _ = translate_stream(chunks_of(raw))
    final = accumulate(events)
    assert [(c["name"], c["input"]) for c in final["content"]] == [
        ("GetWeatherArgs", {"city": "Edinburgh", "country": "GB", "units": "c"}),
        ("get_stock_price", {"ticker": "AAPL", "exchange": "NASDAQ"}),
    ]


def test_tool_call_ids_with_foreign_characters_are_sanitised() -> None:
    chunk = {
        "id": "x",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "functions.Bash:0",
                            "function": {"name": "Bash", "arguments": "{}"},
                        }
                    ]
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    events, _ = translate_stream([chunk])
    check_stream(events)
    assert accumulate(events)["content"][0]["id"] == "functions_Bash_0"


def test_refusal_text_becomes_text_with_stop_reason_refusal() -> None:
    raw = next(p for p in RAW_STREAMS if p.name.startswith("173417d5")).read_bytes()
    events, _ = translate_stream(chunks_of(raw))
    final = accumulate(events)
    assert final["stop_reason"] == "refusal"
    assert final["content"][0]["text"].startswith("I'm sorry")


def test_only_the_first_choice_is_translated() -> None:
    raw = next(p for p in RAW_STREAMS if p.name.startswith("a491adda")).read_bytes()
    events, _ = translate_stream(chunks_of(raw))
    check_stream(events)
    final = accumulate(events)
    assert len(final["content"]) == 1 and json.loads(final["content"][0]["text"])["city"]


# --- DeepSeek reasoning ------------------------------------------------------------------------

DEEPSEEK_REASONING_CHUNKS = [
    {
        "id": "ds-1",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": None, "reasoning_content": ""},
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "ds-1",
        "choices": [
            {
                "index": 0,
                "delta": {"content": None, "reasoning_content": "The user wants"},
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "ds-1",
        "choices": [
            {
                "index": 0,
                "delta": {"content": None, "reasoning_content": " the weather."},
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "ds-1",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_00_abc",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "ds-1",
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]},
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "ds-1",
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "tool_calls"}],
        "usage": {
            "prompt_tokens": 300,
            "completion_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 256},
            "completion_tokens_details": {"reasoning_tokens": 25},
            "prompt_cache_hit_tokens": 256,
            "prompt_cache_miss_tokens": 44,
        },
    },
]


def test_deepseek_reasoning_content_becomes_a_signed_thinking_block() -> None:
    events, translator = translate_stream(DEEPSEEK_REASONING_CHUNKS)
    check_stream(events)
    final = accumulate(reparse(events))
    thinking, tool = final["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "The user wants the weather."
    assert read_gateway_signature(thinking["signature"]) == ("reasoning", "")
    assert tool["name"] == "get_weather" and tool["input"] == {"city": "Paris"}
    assert final["stop_reason"] == "tool_use"
    assert final["usage"]["cache_read_input_tokens"] == 256 and final["usage"]["input_tokens"] == 44


def test_deepseek_reasoning_goes_back_as_reasoning_content_on_the_next_request() -> None:
    events, _ = translate_stream(DEEPSEEK_REASONING_CHUNKS)
    assistant = accumulate(events)["content"]
    req = {
        "model": "deepseek-v4-pro",
        "max_tokens": 1000,
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "tools": [
            {
                "name": "get_weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": assistant},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": assistant[1]["id"], "content": "sunny"}],
            },
        ],
    }
    body = to_chat_request(req, "deepseek-v4-pro", DEEPSEEK)
    sent = body["messages"][1]
    assert sent == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "The user wants the weather.",
        "tool_calls": [
            {
                "id": "call_00_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_00_abc", "content": "sunny"}
    assert body["thinking"] == {"type": "enabled"} and body["reasoning_effort"] == "high"


def test_anthropic_signed_thinking_never_reaches_a_chat_upstream() -> None:
    req = {
        "model": "m",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "secret chain", "signature": "EqQBCkgIARABGAIiQ..."},
                    {"type": "redacted_thinking", "data": "abc"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
        ],
    }
    for dialect in (DEEPSEEK, OPENAI_GPT5, GENERIC):
        body = to_chat_request(req, "x", dialect)
        assert "secret chain" not in orjson.dumps(body).decode()
    assert to_chat_request(req, "x", DEEPSEEK)["messages"][1]["reasoning_content"] == ""
    assert "reasoning_content" not in to_chat_request(req, "x", OPENAI_GPT5)["messages"][1]


def test_deepseek_forced_tool_turns_thinking_off() -> None:
    req = {
        "model": "m",
        "max_tokens": 100,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"},
        "messages": [{"role": "user", "content": "go"}],
    }
    body = to_chat_request(req, "deepseek-v4-pro", DEEPSEEK)
    assert body["thinking"] == {"type": "disabled"} and "reasoning_effort" not in body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}


# --- request mapping ---------------------------------------------------------------------------


def _req(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}], **extra}


TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_maps_to_chat_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    body = to_chat_request(_req(tools=TOOLS, tool_choice=choice), "x")
    assert body["tool_choice"] == expected
    assert "parallel_tool_calls" not in body


def test_disable_parallel_tool_use_sends_parallel_tool_calls_false() -> None:
    body = to_chat_request(
        _req(tools=TOOLS, tool_choice={"type": "auto", "disable_parallel_tool_use": True}), "x"
    )
    assert body["parallel_tool_calls"] is False and body["tool_choice"] == "auto"


def test_tool_choice_is_not_sent_without_tools() -> None:
    body = to_chat_request(_req(tool_choice={"type": "any"}), "x")
    assert "tool_choice" not in body and "tools" not in body


def test_system_blocks_and_mid_conversation_system_messages_keep_their_place() -> None:
    req = _req(
        system=[
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": [{"type": "text", "text": "Now answer in French."}]},
            {"role": "user", "content": "again"},
        ],
    )
    messages = to_chat_request(req, "x")["messages"]
    assert messages == [
        {"role": "system", "content": "You are Claude Code.\n\nBe brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Now answer in French."},
        {"role": "user", "content": "again"},
    ]


def test_cache_control_is_kept_only_where_the_upstream_honours_it() -> None:
    req = _req(system=[{"type": "text", "text": "Big prompt", "cache_control": {"type": "ephemeral"}}])
    assert to_chat_request(req, "x")["messages"][0] == {"role": "system", "content": "Big prompt"}
    kept = to_chat_request(req, "x", ChatDialect(cache_control=True))["messages"][0]
    assert kept == {
        "role": "system",
        "content": [{"type": "text", "text": "Big prompt", "cache_control": {"type": "ephemeral"}}],
    }
    assert any("cache_control" in c for c in CAVEATS)


def test_images_and_pdf_documents_become_chat_content_parts() -> None:
    req = _req(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                    {
                        "type": "document",
                        "title": "spec.pdf",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "plain notes"},
                    },
                    {"type": "text", "text": "Describe these."},
                ],
            }
        ]
    )
    assert to_chat_request(req, "x")["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {
                    "type": "file",
                    "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
                },
                {"type": "text", "text": "plain notes"},
                {"type": "text", "text": "Describe these."},
            ],
        }
    ]


def test_image_inside_tool_result_moves_to_a_user_message_after_the_tool_messages() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    req = _req(
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "screenshot both"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "A"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "B"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_a",
                        "content": [{"type": "text", "text": "shot A"}, image],
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_b", "content": "failed", "is_error": True},
                    {"type": "text", "text": "What do you see?"},
                ],
            },
        ],
    )
    messages = to_chat_request(req, "x")["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assert messages[2]["tool_call_id"] == "toolu_a" and messages[2]["content"].startswith(
        "shot A\n[1 attachment(s)"
    )
    assert messages[3] == {"role": "tool", "tool_call_id": "toolu_b", "content": "Error: failed"}
    assert messages[4]["content"] == [
        {"type": "text", "text": "Attachments from tool result toolu_a:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "What do you see?"},
    ]
    assert any("tool_result" in c and "Images" in c for c in CAVEATS)


def test_sampling_stop_sequences_user_and_structured_output_are_mapped() -> None:
    long_user = "user_" + "a" * 80
    req = _req(
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        stop_sequences=["A", "B", "C", "D", "E"],
        metadata={"user_id": long_user},
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
        stream=True,
    )
    body = to_chat_request(req, "gpt-4o")
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and "top_k" not in body
    assert body["stop"] == ["A", "B", "C", "D"]
    assert body["user"].startswith("u_") and len(body["user"]) <= 64
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert to_chat_request(_req(metadata={"user_id": "alice"}), "x")["user"] == "alice"
    assert to_chat_request(_req(top_k=5), "x", ChatDialect(supports_top_k=True))["top_k"] == 5


@pytest.mark.parametrize(
    ("thinking", "effort", "expected"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 10000}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 31999}, None, "high"),
        ({"type": "enabled", "budget_tokens": 60000}, None, "xhigh"),
        ({"type": "adaptive"}, None, "high"),
        ({"type": "adaptive"}, "max", "xhigh"),
        ({"type": "enabled", "budget_tokens": 1024}, "medium", "medium"),
    ],
)
def test_thinking_maps_to_reasoning_effort_and_drops_sampling_on_gpt5(
    thinking: dict[str, Any], effort: str | None, expected: str
) -> None:
    extra: dict[str, Any] = {"thinking": thinking, "temperature": 1.0, "max_tokens": 64000}
    if effort:
        extra["output_config"] = {"effort": effort}
    body = to_chat_request(_req(**extra), "gpt-5.5", OPENAI_GPT5)
    assert body["reasoning_effort"] == expected
    assert "temperature" not in body and body["max_completion_tokens"] == 64000 and "max_tokens" not in body


def test_no_thinking_on_gpt5_sends_effort_none_and_only_the_default_temperature() -> None:
    body = to_chat_request(_req(temperature=0.2), "gpt-5.5", OPENAI_GPT5)
    assert body["reasoning_effort"] == "none" and "temperature" not in body
    assert to_chat_request(_req(temperature=1), "gpt-5.5", OPENAI_GPT5)["temperature"] == 1


def test_max_tokens_is_clamped_to_the_model_limit() -> None:
    body = to_chat_request(_req(max_tokens=64000), "gpt-4o", ChatDialect(max_output_tokens=16384))
    assert body["max_tokens"] == 16384


def test_long_tool_names_are_shortened_upstream_and_restored_for_the_client() -> None:
    long_name = "mcp__very_long_server_name__" + "x" * 60
    req = _req(
        tools=[{"name": long_name, "input_schema": {"type": "object"}}],
        tool_choice={"type": "tool", "name": long_name},
    )
    body = to_chat_request(req, "x")
    sent = body["tools"][0]["function"]["name"]
    assert len(sent) == 64 and body["tool_choice"]["function"]["name"] == sent
    names = chat_tool_names(req)
    chunk = {
        "id": "x",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {"index": 0, "id": "call_1", "function": {"name": sent, "arguments": "{}"}}
                    ]
                },
                "finish_reason": "stop",
            }
        ],
    }
    events, _ = translate_stream([chunk], tool_names=names)
    assert accumulate(events)["content"][0]["name"] == long_name


def test_assistant_turn_with_only_thinking_is_left_out() -> None:
    req = _req(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "sig"}]},
            {"role": "user", "content": "b"},
        ]
    )
    assert [m["role"] for m in to_chat_request(req, "x")["messages"]] == ["user", "user"]


# --- non-streaming -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "raw"), recorded_streams(), ids=[s[0] for s in recorded_streams()])
def test_non_streaming_completion_gives_the_same_message_as_the_stream(name: str, raw: bytes) -> None:
    chunks = chunks_of(raw)
    state = ChatCompletionStreamState()
    for chunk in chunks:
        if chunk.get("service_tier") not in (None, "auto", "default", "flex", "scale", "priority"):
            chunk = {k: v for k, v in chunk.items() if k != "service_tier"}
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    completion = state.current_completion_snapshot.model_dump(exclude_none=True)
    completion["choices"] = [c for c in completion["choices"] if c["index"] == 0]
    message = from_chat_response(completion, "client-model")
    events, _ = translate_stream(chunks)
    streamed = accumulate(events)
    assert message["content"] == streamed["content"]
    assert message["stop_reason"] == streamed["stop_reason"] and message["usage"] == streamed["usage"]
    assert message["id"] == "msg_" + completion["id"] and message["model"] == "client-model"
    assert (
        message["type"] == "message" and message["role"] == "assistant" and message["stop_sequence"] is None
    )


def test_non_streaming_deepseek_reasoning_and_tool_calls() -> None:
    resp = {
        "id": "ds-2",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "",
                    "reasoning_content": "Need weather.",
                    "tool_calls": [
                        {
                            "id": "call_0",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20},
    }
    message = from_chat_response(resp, "deepseek-v4-pro")
    assert message["content"] == [
        {"type": "thinking", "thinking": "Need weather.", "signature": gateway_signature("reasoning")},
        {"type": "tool_use", "id": "call_0", "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 50,
        "output_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def test_text_only_upstream_gets_a_note_for_each_image_or_pdf() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    pdf = {
        "type": "document",
        "title": "spec.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    req = _req(
        tools=TOOLS,
        messages=[
            {"role": "user", "content": [image, {"type": "text", "text": "and this"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "map"}, image, pdf],
                    }
                ],
            },
        ],
    )
    messages = to_chat_request(req, "deepseek-v4-pro", DEEPSEEK)["messages"]
    assert messages[0]["content"] == [
        {"type": "text", "text": "[an image was attached here; this model cannot read images]"},
        {"type": "text", "text": "and this"},
    ]
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": "map\n[an image was attached here; this model cannot read images]\n"
        "[spec.pdf was attached here; this model cannot read files]",
    }
    assert len(messages) == 3
    assert "image_url" not in orjson.dumps(messages).decode()


def test_deepseek_gets_reasoning_content_on_every_assistant_message() -> None:
    req = _req(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "plain answer from another model"},
            {"role": "user", "content": "b"},
        ]
    )
    assert to_chat_request(req, "x", DEEPSEEK)["messages"][1] == {
        "role": "assistant",
        "content": "plain answer from another model",
        "reasoning_content": "",
    }
    assert "reasoning_content" not in to_chat_request(req, "x", GENERIC)["messages"][1]
