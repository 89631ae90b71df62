"""Gemini's API inbound, as pure codecs: GenerateContentRequest -> Messages, Messages -> Gemini answers.

The recorded Gemini traffic (opencode's Gemini client against gemini-2.5-flash) is used both ways:
its requests are what a Gemini client sends, and its streams, taken through the Messages hub and
back, must still say the same thing to a Gemini client.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.genai import types

from bytespike.errors import GatewayError
from bytespike.protocols.gemini.inbound import (
    GeminiFraming,
    GeminiRequestError,
    MessagesToGeminiStream,
    decode_thinking,
    encode_thinking,
    error_object,
    gemini_to_messages_request,
    message_to_gemini_response,
    usage_metadata,
)
from bytespike.protocols.gemini.upstream import GeminiStreamTranslator
from test_translate_gemini import chunks_of, interactions

WEATHER = {
    "name": "get_weather",
    "description": "Get current weather for a city.",
    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
}


def to_messages(body: dict[str, Any], default_max: int = 4096) -> dict[str, Any]:
    return gemini_to_messages_request(body, "hub-model", default_max)


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def model(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def through_hub(chunks: list[dict[str, Any]], include_thoughts: bool = True) -> list[dict[str, Any]]:
    """Gemini chunks -> Messages events (the upstream translator) -> Gemini chunks (the inbound codec)."""
    source = GeminiStreamTranslator("gemini-client", "msg_test")
    sink = MessagesToGeminiStream("gemini-client", include_thoughts)
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        for name, data in source.feed(chunk):
            out += sink.feed(name, data)
    for name, data in source.finish():
        out += sink.feed(name, data)
    return out


def texts(chunks: list[dict[str, Any]], thought: bool = False) -> str:
    return "".join(p.get("text", "") for c in chunks for cand in c.get("candidates", [])
                   for p in cand.get("content", {}).get("parts", []) if bool(p.get("thought")) == thought)


def calls(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["functionCall"]["name"], p["functionCall"]["args"]) for c in chunks for cand in c.get("candidates", [])
            for p in cand.get("content", {}).get("parts", []) if "functionCall" in p]


def events(*blocks: dict[str, Any], stop: str = "end_turn", usage: dict[str, Any] | None = None) -> list[tuple]:
    """A well-formed Messages stream holding ``blocks`` (thinking, text, tool_use), one delta each."""
    out: list[tuple] = [("message_start", {"type": "message_start", "message": {
        "id": "msg_abc", "type": "message", "role": "assistant", "content": [], "model": "m",
        "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1}}})]
    for i, b in enumerate(blocks):
        if b["type"] == "thinking":
            out.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                "content_block": {"type": "thinking", "thinking": ""}}))
            out.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                "delta": {"type": "thinking_delta", "thinking": b["thinking"]}}))
            out.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                "delta": {"type": "signature_delta", "signature": b["signature"]}}))
        elif b["type"] == "text":
            out.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                "content_block": {"type": "text", "text": ""}}))
            out.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                "delta": {"type": "text_delta", "text": b["text"]}}))
        else:
            out.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}))
            out.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(b["input"])}}))
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop},
                                  "usage": usage or {"output_tokens": 7}}))
    out.append(("message_stop", {"type": "message_stop"}))
    return out


def run(evs: list[tuple], include_thoughts: bool = True) -> list[dict[str, Any]]:
    sink = MessagesToGeminiStream("gemini-client", include_thoughts)
    return [c for name, data in evs for c in sink.feed(name, data)]


# ---------------------------------------------------------------- recorded requests


@pytest.mark.parametrize("name,body,raw", interactions(), ids=[i[0] for i in interactions()])
def test_recorded_gemini_requests_become_messages_requests_saying_the_same(name: str, body: dict, raw: bytes) -> None:
    req = to_messages(body)
    gen = body["generationConfig"]
    assert req["max_tokens"] == gen["maxOutputTokens"]
    assert req.get("temperature") == gen.get("temperature")
    assert [b["text"] for b in req.get("system", [])] == [p["text"] for p in body.get("systemInstruction", {}).get(
        "parts", [])]
    decls = [d for t in body.get("tools", []) for d in t["functionDeclarations"]]
    assert [(t["name"], t["description"], t["input_schema"]["properties"]) for t in req.get("tools", [])] == [
        (d["name"], d["description"], {k: {"type": v["type"].lower()} for k, v in d["parameters"]["properties"].items()})
        for d in decls]
    roles = ["assistant" if c["role"] == "model" else "user" for c in body["contents"]]
    assert [m["role"] for m in req["messages"]] == roles
    for content, msg in zip(body["contents"], req["messages"], strict=True):
        for part, block in zip(content["parts"], msg["content"], strict=True):
            if "text" in part:
                assert block == {"type": "text", "text": part["text"]}
            elif "functionCall" in part:
                assert (block["type"], block["id"], block["name"], block["input"]) == (
                    "tool_use", part["functionCall"]["id"], part["functionCall"]["name"], part["functionCall"]["args"])
            else:
                assert block["type"] == "tool_result"
                assert block["tool_use_id"] == part["functionResponse"]["id"]
                assert json.loads(block["content"][0]["text"]) == part["functionResponse"]["response"]


@pytest.mark.parametrize("name,body,raw", interactions(), ids=[i[0] for i in interactions()])
def test_recorded_gemini_streams_say_the_same_after_the_hub_round_trip(name: str, body: dict, raw: bytes) -> None:
    original = chunks_of(raw)
    back = through_hub(original)
    for chunk in back:
        types.GenerateContentResponse.model_validate(chunk)  # google-genai reads every chunk
    assert texts(back) == texts(original)
    assert calls(back) == calls(original)
    assert back[-1]["candidates"][0]["finishReason"] == original[-1]["candidates"][0]["finishReason"]
    first, last = original[-1]["usageMetadata"], back[-1]["usageMetadata"]
    assert last["promptTokenCount"] == first["promptTokenCount"]
    assert last["candidatesTokenCount"] + last.get("thoughtsTokenCount", 0) == \
        first["candidatesTokenCount"] + first.get("thoughtsTokenCount", 0)
    assert last["totalTokenCount"] == first["promptTokenCount"] + first["candidatesTokenCount"] + \
        first.get("thoughtsTokenCount", 0)


def test_a_function_call_the_client_sends_back_pairs_with_its_response_by_id() -> None:
    body, raw = next((b, r) for n, b, r in interactions() if n == "drives-a-tool-loop#0")
    back = through_hub(chunks_of(raw))
    call_part = next(p for c in back for p in c["candidates"][0].get("content", {}).get("parts", [])
                     if "functionCall" in p)
    call_id = call_part["functionCall"]["id"]
    follow_up = {**body, "contents": [*body["contents"], model(call_part), user(
        {"functionResponse": {"id": call_id, "name": "get_weather", "response": {"output": "sunny, 22C"}}})]}
    req = to_messages(follow_up)
    thinking, call = req["messages"][1]["content"]
    assert call == {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": "Paris"}}
    # the hub's thinking block carrying Gemini's own signature survives the trip through the client
    original = chunks_of(raw)[0]["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    assert thinking["type"] == "thinking" and thinking["signature"].endswith(original)
    assert req["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": call_id,
                                              "content": [{"type": "text", "text": "sunny, 22C"}]}]


# ---------------------------------------------------------------- request fields


def test_generation_config_maps_onto_messages_settings() -> None:
    req = to_messages({"contents": [user({"text": "hi"})], "generationConfig": {
        "temperature": 1.6, "topK": 40, "maxOutputTokens": 300, "stopSequences": ["END", " "]}})
    assert (req["temperature"], req["top_k"], req["max_tokens"], req["stop_sequences"]) == (1.0, 40, 300, ["END"])
    req = to_messages({"contents": [user({"text": "hi"})], "generationConfig": {"topP": 0.5}}, default_max=999)
    assert (req["top_p"], req["max_tokens"]) == (0.5, 999)


@pytest.mark.parametrize("config,budget", [
    ({"thinkingBudget": 5000, "includeThoughts": True}, 5000),
    ({"thinkingBudget": 100}, 1024),
    ({"thinkingBudget": -1}, 8192),
    ({"thinkingLevel": "HIGH"}, 16384),
    ({"thinkingLevel": "low"}, 2048),
    ({"thinkingBudget": 0}, None),
    ({"includeThoughts": False}, None),
])
def test_thinking_config_becomes_a_thinking_budget(config: dict, budget: int | None) -> None:
    req = to_messages({"contents": [user({"text": "hi"})],
                       "generationConfig": {"temperature": 0.2, "maxOutputTokens": 20000, "thinkingConfig": config}})
    if budget is None:
        assert "thinking" not in req and req["temperature"] == 0.2
    else:
        assert req["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert "temperature" not in req  # Claude refuses sampling settings with thinking


def test_thinking_budget_stays_below_max_output_tokens() -> None:
    req = to_messages({"contents": [user({"text": "hi"})],
                       "generationConfig": {"maxOutputTokens": 4000, "thinkingConfig": {"thinkingBudget": 8000}}})
    assert req["thinking"]["budget_tokens"] == 3999


def test_thinking_stays_off_for_a_tool_loop_whose_turn_carries_no_thinking() -> None:
    req = to_messages({"contents": [
        user({"text": "weather?"}), model({"functionCall": {"id": "c1", "name": "get_weather", "args": {}}}),
        user({"functionResponse": {"id": "c1", "name": "get_weather", "response": {"output": "sun"}}})],
        "tools": [{"functionDeclarations": [WEATHER]}],
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}}})
    assert "thinking" not in req


@pytest.mark.parametrize("mode,names,choice", [
    ("AUTO", None, {"type": "auto"}), ("ANY", None, {"type": "any"}), ("NONE", None, {"type": "none"}),
    ("VALIDATED", None, {"type": "auto"}), ("ANY", ["get_weather"], {"type": "tool", "name": "get_weather"}),
])
def test_tool_config_modes_become_tool_choice(mode: str, names: list | None, choice: dict) -> None:
    fcc: dict[str, Any] = {"mode": mode}
    if names:
        fcc["allowedFunctionNames"] = names
    req = to_messages({"contents": [user({"text": "hi"})], "tools": [{"functionDeclarations": [WEATHER]}],
                       "toolConfig": {"functionCallingConfig": fcc}})
    assert req["tool_choice"] == choice
    assert req["tools"][0]["input_schema"] == {"type": "object", "properties": {"city": {"type": "string"}},
                                               "required": ["city"]}


def test_parameters_json_schema_is_taken_as_it_is() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "additionalProperties": False}
    req = to_messages({"contents": [user({"text": "hi"})],
                       "tools": [{"functionDeclarations": [{"name": "count", "parametersJsonSchema": schema}]},
                                 {"googleSearch": {}}]})
    assert req["tools"] == [{"name": "count", "input_schema": schema}]


def test_inline_and_file_data_become_images_and_documents() -> None:
    png = base64.urlsafe_b64encode(b"\x89PNG..\xff\xfe").decode().rstrip("=")
    req = to_messages({"contents": [user(
        {"inlineData": {"mimeType": "image/png", "data": png}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERg=="}},
        {"inlineData": {"mimeType": "text/plain", "data": base64.b64encode(b"notes").decode()}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a.jpg"}},
        {"text": "describe"})]})
    blocks = req["messages"][0]["content"]
    assert blocks[0] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                     "data": base64.b64encode(b"\x89PNG..\xff\xfe").decode()}}
    assert blocks[1]["type"] == "document" and blocks[1]["source"]["media_type"] == "application/pdf"
    assert blocks[2]["source"] == {"type": "text", "media_type": "text/plain", "data": "notes"}
    assert blocks[3] == {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
    assert blocks[4] == {"type": "text", "text": "describe"}


def test_system_instruction_as_content_or_string() -> None:
    a = to_messages({"contents": [user({"text": "hi"})], "systemInstruction": {"parts": [{"text": "a"}, {"text": "b"}]}})
    b = to_messages({"contents": [user({"text": "hi"})], "system_instruction": "be brief"})
    assert a["system"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert b["system"] == [{"type": "text", "text": "be brief"}]


def test_function_responses_without_ids_answer_parallel_calls_by_name_and_order() -> None:
    req = to_messages({"contents": [
        user({"text": "two cities"}),
        model({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
              {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
              {"functionCall": {"name": "get_time", "args": {}}}),
        user({"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
             {"functionResponse": {"name": "get_weather", "response": {"output": "rain"}}},
             {"functionResponse": {"name": "get_weather", "response": {"error": "no data"}}})]})
    ids = [b["id"] for b in req["messages"][1]["content"]]
    assert len(set(ids)) == 3
    results = req["messages"][2]["content"]
    assert [(r["tool_use_id"], r["content"][0]["text"], r.get("is_error", False)) for r in results] == [
        (ids[2], "noon", False), (ids[0], "rain", False), (ids[1], "no data", True)]
    # no declarations were sent: the replayed tools are declared and none may be called
    assert {t["name"] for t in req["tools"]} == {"get_weather", "get_time"} and req["tool_choice"] == {"type": "none"}


def test_a_function_response_with_image_parts_becomes_a_tool_result_with_an_image() -> None:
    req = to_messages({"contents": [
        user({"text": "shot"}), model({"functionCall": {"id": "s1", "name": "screenshot", "args": {}}}),
        user({"functionResponse": {"id": "s1", "name": "screenshot", "response": {"output": "done"},
                                   "parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}})]})
    result = req["messages"][2]["content"][0]
    assert result["content"] == [{"type": "text", "text": "done"},
                                 {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                              "data": "AAAA"}}]


def test_a_call_left_unanswered_gets_an_error_result_so_claude_accepts_the_history() -> None:
    req = to_messages({"contents": [
        user({"text": "go"}), model({"functionCall": {"id": "a", "name": "f", "args": {}}},
                                    {"functionCall": {"id": "b", "name": "f", "args": {}}}),
        user({"functionResponse": {"id": "b", "name": "f", "response": {"output": "ok"}}}, {"text": "and?"})]})
    content = req["messages"][2]["content"]
    assert [(b["type"], b.get("tool_use_id"), b.get("is_error")) for b in content] == [
        ("tool_result", "a", True), ("tool_result", "b", None), ("text", None, None)]


def test_thought_parts_and_foreign_signatures_are_dropped_from_the_history() -> None:
    req = to_messages({"contents": [
        user({"text": "q"}),
        model({"text": "musing", "thought": True}, {"text": "answer", "thoughtSignature": "CiQBDDnWx8TW"}),
        user({"text": "more"})]})
    assert req["messages"][1]["content"] == [{"type": "text", "text": "answer"}]


@pytest.mark.parametrize("body,param", [
    ({"contents": []}, "contents"),
    ({"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ({"contents": [user({"text": "x"})], "generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
    ({"contents": [user({"text": "x"})], "generationConfig": {"maxOutputTokens": 0}},
     "generationConfig.maxOutputTokens"),
    ({"contents": [user({"text": "x"})], "generationConfig": {"temperature": "hot"}}, "generationConfig.temperature"),
    ({"contents": [user({"text": "x"})], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
     "toolConfig.functionCallingConfig.mode"),
    ({"contents": [user({"text": "x"}), model({"functionCall": {"args": {}}})]}, "contents[1].parts[0].functionCall.name"),
])
def test_requests_that_cannot_be_sent_name_the_field(body: dict, param: str) -> None:
    with pytest.raises(GeminiRequestError) as exc:
        to_messages(body)
    assert exc.value.param == param


# ---------------------------------------------------------------- answers


THINKING = {"type": "thinking", "thinking": "Paris weather needs the tool.", "signature": "EqQBCkYIBxgCKkA+/=="}
CALL = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}


def test_signed_thinking_rides_on_the_function_call_and_comes_back_unmodified() -> None:
    chunks = run(events(THINKING, CALL, stop="tool_use"))
    parts = [p for c in chunks for p in c["candidates"][0].get("content", {}).get("parts", [])]
    assert parts[0] == {"text": THINKING["thinking"], "thought": True}
    call_part = parts[1]
    assert call_part["functionCall"] == {"id": "toolu_01A", "name": "get_weather", "args": {"city": "Paris"}}
    assert decode_thinking(call_part["thoughtSignature"]) == [THINKING]
    # google-genai keeps the signature as bytes and sends it back URL-safe (here also unpadded);
    # the client drops the thought part from its history
    kept = types.Part.model_validate(call_part).model_dump(mode="json", by_alias=True, exclude_none=True)
    kept["thoughtSignature"] = base64.urlsafe_b64encode(base64.b64decode(call_part["thoughtSignature"])
                                                        ).decode().rstrip("=")
    req = to_messages({"contents": [user({"text": "weather?"}), model(kept), user(
        {"functionResponse": {"id": "toolu_01A", "name": "get_weather", "response": {"output": "sun"}}})],
        "tools": [{"functionDeclarations": [WEATHER]}],
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}, "maxOutputTokens": 8000}})
    assert req["messages"][1]["content"] == [THINKING, CALL]
    assert req["thinking"] == {"type": "enabled", "budget_tokens": 2048}  # the turn carries its thinking


def test_thoughts_not_asked_for_are_not_shown_but_still_carried() -> None:
    chunks = run(events(THINKING, {"type": "text", "text": "Sunny."}), include_thoughts=False)
    parts = [p for c in chunks for p in c["candidates"][0].get("content", {}).get("parts", [])]
    assert [p["text"] for p in parts] == ["Sunny."]
    assert decode_thinking(parts[0]["thoughtSignature"]) == [THINKING]


def test_thinking_at_the_very_end_goes_on_a_trailing_empty_part() -> None:
    chunks = run(events({"type": "text", "text": "Hi"}, THINKING))
    last = chunks[-1]["candidates"][0]
    assert last["finishReason"] == "STOP"
    assert last["content"]["parts"][0]["text"] == ""
    assert decode_thinking(last["content"]["parts"][0]["thoughtSignature"]) == [THINKING]


@pytest.mark.parametrize("stop,finish", [("end_turn", "STOP"), ("tool_use", "STOP"), ("stop_sequence", "STOP"),
                                         ("max_tokens", "MAX_TOKENS"), ("refusal", "SAFETY")])
def test_stop_reasons_become_finish_reasons(stop: str, finish: str) -> None:
    chunks = run(events({"type": "text", "text": "x"}, stop=stop))
    assert chunks[-1]["candidates"][0]["finishReason"] == finish
    msg = {"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop, "usage": {}}
    assert message_to_gemini_response(msg, "m")["candidates"][0]["finishReason"] == finish


def test_usage_metadata_counts_cached_prompt_and_thought_tokens() -> None:
    usage = {"input_tokens": 100, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 50,
             "output_tokens": 300, "output_tokens_details": {"thinking_tokens": 120}}
    assert usage_metadata(usage) == {"promptTokenCount": 1050, "candidatesTokenCount": 180, "totalTokenCount": 1350,
                                     "cachedContentTokenCount": 900, "thoughtsTokenCount": 120}
    chunks = run(events({"type": "text", "text": "x"}, usage=usage))
    assert chunks[-1]["usageMetadata"] == usage_metadata(usage)
    parsed = types.GenerateContentResponse.model_validate(chunks[-1]).usage_metadata
    assert (parsed.cached_content_token_count, parsed.thoughts_token_count) == (900, 120)


def test_a_whole_message_becomes_a_response_google_genai_reads() -> None:
    msg = {"id": "msg_xyz", "type": "message", "role": "assistant", "stop_reason": "tool_use",
           "content": [THINKING, {"type": "text", "text": "Checking."}, CALL],
           "usage": {"input_tokens": 12, "output_tokens": 30}}
    resp = types.GenerateContentResponse.model_validate(message_to_gemini_response(msg, "claude-sonnet-4-6"))
    assert resp.text == "Checking."
    assert resp.function_calls[0].id == "toolu_01A" and resp.function_calls[0].args == {"city": "Paris"}
    assert resp.response_id == "xyz" and resp.model_version == "claude-sonnet-4-6"
    assert resp.usage_metadata.prompt_token_count == 12 and resp.usage_metadata.total_token_count == 42


def test_tool_arguments_split_across_deltas_come_whole_in_one_function_call() -> None:
    sink = MessagesToGeminiStream("m")
    evs = events(CALL, stop="tool_use")
    pieces = ['{"ci', 'ty": "Par', 'is"}']
    evs[2:3] = [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "input_json_delta", "partial_json": p}}) for p in pieces]
    chunks = [c for name, data in evs for c in sink.feed(name, data)]
    assert calls(chunks) == [("get_weather", {"city": "Paris"})]


def test_without_alt_sse_the_stream_is_one_json_array() -> None:
    framing = GeminiFraming(sse=False)
    chunks = run(events({"type": "text", "text": "a"}, {"type": "text", "text": "b"}))
    raw = framing.chunks(chunks[:1]) + framing.chunks(chunks[1:]) + framing.close()
    assert orjson.loads(raw) == chunks
    broken = GeminiFraming(sse=False)
    raw = broken.chunks(chunks[:1]) + broken.error(error_object(GatewayError("api_error", "cut")))
    assert orjson.loads(raw)[-1] == {"error": {"code": 500, "message": "cut", "status": "INTERNAL"}}


def test_alt_sse_frames_are_what_gemini_sends() -> None:
    chunks = run(events({"type": "text", "text": "a"}))
    raw = GeminiFraming(sse=True).chunks(chunks)
    assert raw.startswith(b"data: {") and raw.endswith(b"}\r\n\r\n")
    assert chunks_of(raw) == chunks


@pytest.mark.parametrize("kind,code,status", [
    ("invalid_request_error", 400, "INVALID_ARGUMENT"), ("authentication_error", 401, "UNAUTHENTICATED"),
    ("permission_error", 403, "PERMISSION_DENIED"), ("not_found_error", 404, "NOT_FOUND"),
    ("rate_limit_error", 429, "RESOURCE_EXHAUSTED"), ("api_error", 500, "INTERNAL"),
    ("timeout_error", 504, "DEADLINE_EXCEEDED"), ("overloaded_error", 529, "UNAVAILABLE"),
])
def test_errors_render_in_geminis_shape(kind: str, code: int, status: str) -> None:
    assert error_object(GatewayError(kind, "why")) == {"error": {"code": code, "message": "why", "status": status}}


def test_only_gateway_made_signatures_decode() -> None:
    assert decode_thinking(encode_thinking([THINKING])) == [THINKING]
    assert decode_thinking("CiQBDDnWx8TWfKCucRzvraqsJnPun/3Lm8wkXNPPuFeSTvJ1V0EK") == []
    assert decode_thinking("not base64 at all!") == []
    assert decode_thinking(None) == []


# ---------------------------------------------------------------- Gemini CLI's own requests

CLI = Path(__file__).resolve().parent / "data" / "gemini_cli"


def cli_capture(name: str) -> dict[str, Any]:
    return json.loads((CLI / name).read_text())


def test_gemini_cli_requests_become_messages_requests_with_its_tools_system_and_thinking() -> None:
    capture = cli_capture("tool-loop.first.json")
    assert capture["path"] == "/v1beta/models/claude-sonnet-4-6:streamGenerateContent?alt=sse"
    body = capture["body"]
    req = to_messages(body, default_max=64000)
    names = [d["name"] for t in body["tools"] for d in t["functionDeclarations"]]
    assert [t["name"] for t in req["tools"]] == names and len(names) == 15
    assert all(t["input_schema"]["type"] == "object" for t in req["tools"])
    assert req["system"][0]["text"] == body["systemInstruction"]["parts"][0]["text"]
    assert req["thinking"] == {"type": "enabled", "budget_tokens": 8192}  # includeThoughts alone
    assert "temperature" not in req and "top_k" not in req
    assert [b["type"] for b in req["messages"][0]["content"]] == ["text", "text"]


def test_gemini_cli_tool_loop_pairs_its_minted_call_id_with_the_result() -> None:
    body = cli_capture("tool-loop.second.json")["body"]
    req = to_messages(body, default_max=64000)
    call = req["messages"][1]["content"][-1]
    result = req["messages"][2]["content"][0]
    assert call["type"] == "tool_use" and call["name"] == "run_shell_command"
    assert call["input"] == {"command": "echo bytespike-tool-ran"}
    assert result["tool_use_id"] == call["id"] == "run_shell_command_1796235476740_0"
    assert "bytespike-tool-ran" in result["content"][0]["text"]
    # the fake signature is no gateway's, so thinking cannot continue this tool loop
    assert "thinking" not in req


def test_gemini_cli_helper_calls_ask_for_json_with_an_upper_case_schema() -> None:
    body = cli_capture("classifier.generate-content.json")["body"]
    req = to_messages(body)
    schema = req["output_config"]["format"]["schema"]
    assert schema["type"] == "object" and schema["properties"]["complexity_score"]["type"] == "integer"
    assert req["thinking"] == {"type": "enabled", "budget_tokens": 4095}  # HIGH, kept under max_tokens 4096
