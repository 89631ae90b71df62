"""OpenAI Responses clients (Codex CLI, client.responses) reaching any model: the Messages request
their Responses request becomes, and the Responses stream and object Anthropic events become
(checked against the openai SDK's own event types)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from bytespike.protocols.openai_responses import (
    MessagesToResponsesStream,
    ResponsesRequestError,
    custom_tool_names,
    message_to_response,
    responses_to_messages_request,
)
from bytespike.protocols.openai_responses.output import message_events
from responses_support import CODEX_REQUEST, check_responses_stream, recorded_interactions
from test_anthropic_stream import ANTHROPIC_SDK, recorded_anthropic

CODEX = json.loads(CODEX_REQUEST.read_text())["body"]


def responses_stream(events: list[tuple[str, dict[str, Any]]], request: dict[str, Any] | None = None,
                     custom: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    s = MessagesToResponsesStream("claude-sonnet-4-6", request, custom)
    out: list[dict[str, Any]] = []
    for name, data in events:
        out += s.feed(name, data)
    return out


def test_codex_request_becomes_a_messages_request_with_its_tools_and_developer_prompt() -> None:
    req = responses_to_messages_request(CODEX, "claude-sonnet-4-6")
    developer = [p["text"] for i in CODEX["input"] if i.get("role") == "developer" for p in i["content"]]
    assert [b["text"] for b in req["system"]] == developer
    assert [m["role"] for m in req["messages"]] == ["user"]
    assert [b["text"] for b in req["messages"][0]["content"]] == [
        p["text"] for i in CODEX["input"] if i.get("role") == "user" for p in i["content"]]
    functions = [t["name"] for t in CODEX["tools"] if t["type"] == "function"]
    assert [t["name"] for t in req["tools"]] == functions
    assert req["tools"][0]["input_schema"] == CODEX["tools"][0]["parameters"]
    assert "tool_choice" not in req  # auto, parallel calls allowed
    assert req["stream"] is True
    assert req["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert req["max_tokens"] > req["thinking"]["budget_tokens"]


@pytest.mark.parametrize(("field", "value"), [("previous_response_id", "resp_1"), ("store", True),
                                              ("conversation", "conv_1"), ("background", True)])
def test_stateful_requests_are_refused_with_the_field_named(field: str, value: Any) -> None:
    with pytest.raises(ResponsesRequestError) as exc:
        responses_to_messages_request({"model": "m", "input": "hi", field: value}, "m")
    assert exc.value.param == field
    assert "store" in exc.value.message or "stores" in exc.value.message or "tasks" in exc.value.message


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m"}, "input"),
    ({"model": "m", "input": []}, "input"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content"),
    ({"model": "m", "input": "x", "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "m", "input": "x", "reasoning": {"effort": "huge"}}, "reasoning.effort"),
])
def test_bad_input_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ResponsesRequestError) as exc:
        responses_to_messages_request(body, "m")
    assert exc.value.param == param


def test_a_codex_tool_loop_becomes_tool_use_and_tool_result_turns() -> None:
    body = {"model": "m", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Listing."}]},
        {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
        {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done"},
    ], "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
                 {"type": "custom", "name": "apply_patch", "description": "Patch files",
                  "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
                 {"type": "local_shell"}, {"type": "web_search"},
                 {"type": "namespace", "name": "ns", "tools": []}],
        "parallel_tool_calls": False, "tool_choice": "auto"}
    req = responses_to_messages_request(body, "m")
    assert req["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "list files"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Listing."},
            {"type": "tool_use", "id": "call_1", "name": "exec_command", "input": {"cmd": "ls"}},
            {"type": "tool_use", "id": "call_2", "name": "apply_patch", "input": {"input": "*** Begin Patch"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "a.txt"},
                                     {"type": "tool_result", "tool_use_id": "call_2", "content": "Done"}]}]
    assert [t["name"] for t in req["tools"]] == ["exec_command", "apply_patch"]
    assert req["tools"][1]["input_schema"]["required"] == ["input"]
    assert "start: x" in req["tools"][1]["input_schema"]["properties"]["input"]["description"]
    assert req["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert custom_tool_names(body) == {"apply_patch"}


@pytest.mark.parametrize("name", ["lib/streaming/fixtures/basic_response.txt",
                                  "lib/streaming/fixtures/tool_use_response.txt",
                                  "lib/streaming/fixtures/refusal_response.txt",
                                  "lib/streaming/fixtures/incomplete_partial_json_response.txt",
                                  "fixtures/fable-fallback/stream-a-refusal.sse"])
def test_recorded_anthropic_streams_become_responses_streams_the_sdk_accepts(name: str) -> None:
    events = recorded_anthropic(ANTHROPIC_SDK / name)
    final = check_responses_stream(responses_stream(events))
    texts = "".join(b["delta"].get("text", "") for n, b in events if n == "content_block_delta")
    assert final.output_text == texts
    stop = [d["delta"]["stop_reason"] for n, d in events if n == "message_delta"][-1]
    assert final.status == ("completed" if stop in ("end_turn", "tool_use") else "incomplete")


def test_thinking_and_signature_survive_a_round_trip_through_encrypted_content() -> None:
    events = recorded_anthropic(ANTHROPIC_SDK / "fixtures/fable-fallback/stream-a-refusal.sse")
    thinking = next(d["content_block"] for n, d in events if n == "content_block_start"
                    and d["content_block"]["type"] == "thinking")
    text = "".join(d["delta"]["thinking"] for n, d in events if n == "content_block_delta"
                   and d["delta"]["type"] == "thinking_delta")
    sig = "".join(d["delta"]["signature"] for n, d in events if n == "content_block_delta"
                  and d["delta"]["type"] == "signature_delta")
    assert thinking["type"] == "thinking" and sig
    out = responses_stream(events)
    kinds = [e["type"] for e in out]
    assert "response.reasoning_summary_text.delta" in kinds
    final = check_responses_stream(out)
    reasoning = next(i for i in final.output if i.type == "reasoning")
    assert reasoning.summary[0].text == text
    replay = {"model": "m", "input": [{"role": "user", "content": "hi"}, reasoning.model_dump(exclude_none=True),
                                      {"role": "user", "content": "again"}]}
    req = responses_to_messages_request(replay, "m")
    assert req["messages"][1]["content"] == [{"type": "thinking", "thinking": text, "signature": sig}]


def test_custom_tool_calls_go_back_as_custom_tool_call_items_with_the_raw_input() -> None:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use",
               "content": [{"type": "tool_use", "id": "toolu_1", "name": "apply_patch",
                            "input": {"input": "*** Begin Patch\n*** End Patch"}},
                           {"type": "tool_use", "id": "toolu_2", "name": "exec_command", "input": {"cmd": "ls"}}],
               "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4}}
    out = responses_stream(message_events(message), custom=frozenset({"apply_patch"}))
    final = check_responses_stream(out)
    assert final.status == "completed"
    custom, call = final.output
    assert custom.type == "custom_tool_call" and custom.input == "*** Begin Patch\n*** End Patch"
    assert custom.call_id == "toolu_1"
    assert call.type == "function_call" and orjson.loads(call.arguments) == {"cmd": "ls"}
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.input_tokens_details.cached_tokens) == (14, 4)
    whole = message_to_response(message, "m", custom_tools={"apply_patch"})
    assert [i["type"] for i in whole["output"]] == ["custom_tool_call", "function_call"]


def test_an_error_event_after_the_first_byte_ends_the_stream_with_response_failed() -> None:
    events = [("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "par"}}),
              ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]
    out = responses_stream(events)
    final = check_responses_stream(out)
    assert out[-1]["type"] == "response.failed"
    assert final.error is not None and final.error.message == "Overloaded"


def test_every_recorded_responses_request_reads_as_a_messages_request() -> None:
    for name, body, _ in recorded_interactions():
        req = responses_to_messages_request(body, "claude-sonnet-4-6")
        assert req["messages"][0]["role"] == "user", name
        calls = {i["call_id"] for i in body["input"] if i.get("type") == "function_call"}
        uses = {b["id"] for m in req["messages"] for b in m["content"] if b["type"] == "tool_use"}
        assert calls == uses, name
