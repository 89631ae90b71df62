"""Messages <-> OpenAI Responses for Messages clients reaching a Responses upstream: the request
OpenAI gets (checked by the strict fake's rules), and every recorded answer coming back as a
well-formed Anthropic stream and message."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bytespike.protocols.hub import gateway_signature, read_gateway_signature
from bytespike.protocols.openai_responses import (
    ResponsesStreamTranslator,
    dropped_params,
    from_responses_response,
    preset_for_model,
    to_responses_request,
    usage_from_responses,
)
from bytespike.protocols.openai_responses.common import reasoning_item
from bytespike.protocols.openai_responses.upstream import GENERIC, OPENAI_GPT5
from responses_fake import Rejected, answer_for, encrypted_for, validate
from responses_support import parse_sse, recorded_interactions
from test_anthropic_stream import accumulate, check_stream

RECORDED = recorded_interactions()
IDS = [name for name, _, _ in RECORDED]


def translate(raw: bytes, model: str = "gpt-5-5") -> tuple[list[tuple[str, dict[str, Any]]], ResponsesStreamTranslator]:
    t = ResponsesStreamTranslator(model)
    events: list[tuple[str, dict[str, Any]]] = []
    for payload in parse_sse(raw):
        events += t.feed(payload)
    return events + t.finish(), t


@pytest.mark.parametrize(("name", "request_body", "raw"), RECORDED, ids=IDS)
def test_every_recorded_responses_stream_becomes_a_well_formed_anthropic_stream(
        name: str, request_body: dict[str, Any], raw: bytes) -> None:
    events, t = translate(raw)
    check_stream(events)
    assert t.completed
    message = accumulate(events)
    final = parse_sse(raw)[-1]["response"]
    texts = [p["text"] for item in final["output"] if item["type"] == "message" for p in item["content"]]
    assert "".join(b.get("text", "") for b in message["content"] if b["type"] == "text") == "".join(texts)
    calls = [item for item in final["output"] if item["type"] == "function_call"]
    tool_uses = [b for b in message["content"] if b["type"] == "tool_use"]
    assert [(b["id"], b["name"], b["input"]) for b in tool_uses] == [
        (c["call_id"], c["name"], orjson.loads(c["arguments"])) for c in calls]
    assert message["stop_reason"] == ("tool_use" if calls else "end_turn")
    usage = final["usage"]
    assert message["usage"]["input_tokens"] + message["usage"].get("cache_read_input_tokens", 0) == usage["input_tokens"]
    assert message["usage"]["output_tokens"] == usage["output_tokens"]


@pytest.mark.parametrize(("name", "request_body", "raw"), RECORDED, ids=IDS)
def test_every_recorded_response_read_whole_gives_the_message_its_stream_gives(
        name: str, request_body: dict[str, Any], raw: bytes) -> None:
    events, _ = translate(raw)
    streamed = accumulate(events)
    whole = from_responses_response(parse_sse(raw)[-1]["response"], "gpt-5-5")
    assert [{k: v for k, v in b.items() if k != "signature"} for b in whole["content"]] == [
        {k: v for k, v in b.items() if k != "signature"} for b in streamed["content"]]
    assert whole["stop_reason"] == streamed["stop_reason"]
    assert whole["usage"] == streamed["usage"]


def test_recorded_reasoning_item_comes_back_as_thinking_and_goes_upstream_unchanged() -> None:
    name, req, raw = next(r for r in RECORDED if "reasoning" in r[0])
    events, t = translate(raw)
    message = accumulate(events)
    thinking = [b for b in message["content"] if b["type"] == "thinking"]
    assert len(thinking) == 1
    done = next(p["item"] for p in parse_sse(raw) if p["type"] == "response.output_item.done"
                and p["item"]["type"] == "reasoning")
    item = reasoning_item(thinking[0]["signature"])
    assert item == {"id": done["id"], "summary": done["summary"], "encrypted_content": done["encrypted_content"],
                    "type": "reasoning"}
    assert t.usage["output_tokens_details"] == {"thinking_tokens": 13}
    follow_up = {"model": "gpt-5-5", "max_tokens": 200, "thinking": {"type": "enabled", "budget_tokens": 2048},
                 "messages": [{"role": "user", "content": "Think briefly, then reply exactly with: Hello!"},
                              {"role": "assistant", "content": message["content"]},
                              {"role": "user", "content": "Again."}]}
    body = to_responses_request(follow_up, "gpt-5.5", OPENAI_GPT5)
    assert body["input"][1] == item
    assert body["input"][2] == {"type": "message", "role": "assistant",
                                "content": [{"type": "output_text", "text": "Hello!"}]}
    assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}


def test_recorded_tool_loop_request_is_rebuilt_from_the_messages_conversation() -> None:
    name, first_req, raw = next(r for r in RECORDED if r[0].endswith("gpt-5-5-drives-a-tool-loop#0"))
    second = next(r for r in RECORDED if r[0].endswith("gpt-5-5-drives-a-tool-loop#1"))[1]
    message = accumulate(translate(raw)[0])
    tool_use = message["content"][0]
    req = {"model": "gpt-5-5", "max_tokens": 80, "system": "Use the get_weather tool, then answer in one short sentence.",
           "tools": [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                     for t in first_req["tools"]],
           "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]},
                        {"role": "assistant", "content": [tool_use]},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"],
                                                      "content": '{"temperature":22,"condition":"sunny"}'}]}]}
    body = to_responses_request(req, "gpt-5.5", GENERIC)
    assert body["instructions"] == second["input"][0]["content"]
    assert body["input"][1:] == second["input"][2:]
    assert body["input"][0] == {"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}
    assert body["tools"] == [{**t, "strict": False} for t in second["tools"]]
    validate(orjson.dumps(body))


def test_gpt5_family_drops_non_default_sampling_and_stop_sequences_and_says_so() -> None:
    assert preset_for_model("gpt-5.5") == "openai_gpt5"
    assert preset_for_model("o4-mini") == "openai_o_series"
    assert preset_for_model("gpt-4o") is None
    req = {"model": "m", "max_tokens": 10, "temperature": 0.2, "top_p": 1, "top_k": 5, "stop_sequences": ["x"],
           "messages": [{"role": "user", "content": "hi"}]}
    body = to_responses_request(req, "gpt-5.5", OPENAI_GPT5)
    assert "temperature" not in body and "top_k" not in body and "stop" not in body
    assert body["max_output_tokens"] == 16
    assert body["reasoning"] == {"effort": "none"}
    assert dropped_params(req, OPENAI_GPT5) == ["temperature", "top_k", "stop_sequences"]
    validate(orjson.dumps(body))
    generic = to_responses_request(req, "gpt-4o", GENERIC)
    assert generic["temperature"] == 0.2 and "reasoning" not in generic


def test_strict_fake_refuses_what_openai_refuses() -> None:
    base = {"model": "gpt-5.5", "input": "hi"}
    for extra, message in [({"max_tokens": 5}, "moved to 'max_output_tokens'"),
                           ({"temperature": 0.5}, "not supported with this model"),
                           ({"max_output_tokens": 4}, ">= 16"),
                           ({"stop": ["x"]}, "Unknown parameter"),
                           ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]},
                            "No tool call found"),
                           ({"input": [{"type": "reasoning", "id": "rs_1", "summary": [],
                                        "encrypted_content": "forged"}, {"role": "user", "content": "x"}]},
                            "could not be verified")]:
        with pytest.raises(Rejected, match=message):
            validate(orjson.dumps({**base, **extra}))


def test_images_documents_and_error_results_reach_responses_as_input_parts() -> None:
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    req = {"model": "m", "max_tokens": 100, "tools": [{"name": "shot", "input_schema": {"type": "object"}}],
           "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
           "messages": [
               {"role": "user", "content": [{"type": "text", "text": "look"}, img,
                                            {"type": "document", "title": "a.pdf",
                                             "source": {"type": "base64", "media_type": "application/pdf",
                                                        "data": "JVBE"}}]},
               {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                             "content": [{"type": "text", "text": "no"}, img]}]}]}
    body = to_responses_request(req, "gpt-4o")
    assert body["input"][0]["content"] == [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}]
    assert body["input"][2]["output"] == [
        {"type": "input_text", "text": "Error:"}, {"type": "input_text", "text": "no"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    validate(orjson.dumps(body))


def test_foreign_thinking_is_not_sent_to_openai() -> None:
    req = {"model": "m", "max_tokens": 100, "messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "secret", "signature": "EqAnthropic"},
                                          {"type": "thinking", "thinking": "x", "signature": gateway_signature("reasoning")},
                                          {"type": "text", "text": "b"}]},
        {"role": "user", "content": "c"}]}
    body = to_responses_request(req, "gpt-5.5", OPENAI_GPT5)
    assert "secret" not in orjson.dumps(body).decode()
    assert [i.get("type", "message") for i in body["input"]] == ["message", "message", "message"]


def test_fake_answers_round_trip_reasoning_through_the_translators() -> None:
    """A second turn carrying the first turn's thinking block passes the fake's verification."""
    req = {"model": "m", "max_tokens": 500, "thinking": {"type": "adaptive"},
           "messages": [{"role": "user", "content": "hi"}]}
    body = to_responses_request(req, "gpt-5.5", OPENAI_GPT5)
    resp = answer_for(validate(orjson.dumps(body)), 1)
    message = from_responses_response(resp, "gpt-5-5")
    assert message["content"][0]["type"] == "thinking"
    assert read_gateway_signature(message["content"][0]["signature"])[0] == "responses"  # type: ignore[index]
    req["messages"] += [{"role": "assistant", "content": message["content"]}, {"role": "user", "content": "more"}]
    second = to_responses_request(req, "gpt-5.5", OPENAI_GPT5)
    assert second["input"][1]["encrypted_content"] == encrypted_for(resp["id"])
    validate(orjson.dumps(second))


def test_responses_usage_is_split_the_anthropic_way() -> None:
    usage = usage_from_responses({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60},
                                  "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}})
    assert usage == {"input_tokens": 40, "cache_read_input_tokens": 60, "cache_creation_input_tokens": 0,
                     "output_tokens": 30, "output_tokens_details": {"thinking_tokens": 12}}


def test_failed_and_incomplete_responses_end_the_anthropic_stream_properly() -> None:
    t = ResponsesStreamTranslator("m")
    events = t.feed({"type": "response.created", "response": {"id": "resp_1"}})
    events += t.feed({"type": "response.output_item.added", "item": {"id": "m1", "type": "message"}})
    events += t.feed({"type": "response.output_text.delta", "item_id": "m1", "delta": "par"})
    events += t.feed({"type": "response.incomplete", "response": {
        "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
        "usage": {"input_tokens": 5, "output_tokens": 16}}})
    check_stream(events)
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    t = ResponsesStreamTranslator("m")
    events = t.feed({"type": "response.created", "response": {"id": "resp_2"}})
    events += t.feed({"type": "response.failed", "response": {"status": "failed", "error": {
        "code": "rate_limit_exceeded", "message": "slow down"}}})
    assert events[-1] == ("error", {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    assert not t.completed
