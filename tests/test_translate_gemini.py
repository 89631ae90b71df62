"""Anthropic Messages <-> Gemini, checked against recorded Gemini 2.5 traffic.

The tool-loop recording is replayed as a client would live it: the first response is translated
into Anthropic events, accumulated by the Anthropic SDK, and sent back as history; the next Gemini
request must then match the recorded one, thoughtSignature included, on the same functionCall part.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from bytespike.protocols.gemini.schema import GEMINI_SCHEMA_KEYWORDS
from bytespike.protocols.gemini.upstream import (
    CAVEATS,
    DUMMY_SIGNATURE,
    GEMINI_3,
    GEMINI_25_FLASH,
    GEMINI_25_PRO,
    GENERIC,
    GeminiDialect,
    GeminiStreamTranslator,
    from_gemini_response,
    gemini_tool_names,
    to_gemini_request,
)
from bytespike.protocols.hub import gateway_signature, read_gateway_signature
from bytespike.protocols.sse import SSEParser
from test_anthropic_stream import accumulate, check_stream, reparse

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
CASSETTES = (
    RECORDED / "anomalyco__opencode" / "packages" / "llm" / "test" / "fixtures" / "recordings" / "gemini"
)
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def interactions() -> list[tuple[str, dict[str, Any], bytes]]:
    out = []
    for path in sorted(CASSETTES.glob("*.json")):
        for i, item in enumerate(json.loads(path.read_text())["interactions"]):
            out.append(
                (f"{path.stem}#{i}", json.loads(item["request"]["body"]), item["response"]["body"].encode())
            )
    return out


def recorded(name: str) -> tuple[dict[str, Any], bytes]:
    return next((body, raw) for n, body, raw in interactions() if n == name)


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    parser = SSEParser()
    return [orjson.loads(e.data) for e in parser.feed(raw) + parser.close() if e.data]


def translate_stream(
    chunks: list[dict[str, Any]], message_id: str | None = "msg_test", **kwargs: Any
) -> tuple[list, GeminiStreamTranslator]:
    translator = GeminiStreamTranslator("gemini-client", message_id, **kwargs)
    events = [e for chunk in chunks for e in translator.feed(chunk)]
    events += translator.finish()
    return events, translator


def client_history(raw: bytes) -> list[dict[str, Any]]:
    """The assistant content an Anthropic client keeps after reading the translated stream."""
    events, _ = translate_stream(chunks_of(raw))
    return accumulate(reparse(events))["content"]


def anthropic_from_gemini(
    body: dict[str, Any], assistant_turns: list[list[dict[str, Any]]]
) -> dict[str, Any]:
    """The Messages request a client would send for the recorded Gemini request ``body``; model
    turns are taken from ``assistant_turns`` (what the client kept from earlier responses)."""
    gen = body.get("generationConfig", {})
    req: dict[str, Any] = {
        "model": "gemini-client",
        "max_tokens": gen["maxOutputTokens"],
        "messages": [],
        "stream": True,
    }
    if "temperature" in gen:
        req["temperature"] = gen["temperature"]
    if "systemInstruction" in body:
        req["system"] = "".join(p["text"] for p in body["systemInstruction"]["parts"])
    turns = iter(assistant_turns)
    history: list[dict[str, Any]] = []
    for content in body["contents"]:
        if content["role"] == "model":
            history = next(turns)
            req["messages"].append({"role": "assistant", "content": history})
            continue
        blocks: list[dict[str, Any]] = []
        for part in content["parts"]:
            if "text" in part:
                blocks.append({"type": "text", "text": part["text"]})
            elif "functionResponse" in part:
                response = part["functionResponse"]
                call_ids = [
                    b["id"] for b in history if b["type"] == "tool_use" and b["name"] == response["name"]
                ]
                blocks.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": call_ids[0],
                        "content": response["response"]["content"],
                    }
                )
        req["messages"].append({"role": "user", "content": blocks})
    if "tools" in body:
        req["tools"] = [
            {
                "name": d["name"],
                "description": d["description"],
                "input_schema": {**d["parameters"], "additionalProperties": False},
            }
            for d in body["tools"][0]["functionDeclarations"]
        ]
    config = body.get("toolConfig", {}).get("functionCallingConfig")
    if config and config.get("allowedFunctionNames"):
        req["tool_choice"] = {"type": "tool", "name": config["allowedFunctionNames"][0]}
    elif config:
        req["tool_choice"] = {"type": config["mode"].lower().replace("none", "none")}
    return req


def normalise(body: dict[str, Any]) -> dict[str, Any]:
    """Blank the parts of a Gemini request that legitimately differ between the recording
    (opencode) and us, after checking ours are consistent: functionCall/functionResponse ids (we
    send the tool_use id, opencode its own counter) and the functionResponse payload shape
    (opencode ``{"name", "content"}``, us the documented ``{"output": ...}``)."""
    body = json.loads(json.dumps(body))
    calls = {}
    for content in body["contents"]:
        for part in content["parts"]:
            if "functionCall" in part:
                calls[part["functionCall"].pop("id")] = part["functionCall"]["name"]
            if "functionResponse" in part:
                response = part["functionResponse"]
                assert calls.get(response.pop("id")) == response["name"], (
                    "functionResponse id/name do not match a call"
                )
                payload = response["response"]
                response["response"] = payload.get("output", payload.get("content"))
    return body


# --- recorded requests -------------------------------------------------------------------------


def test_recorded_requests_match_the_translation_of_the_equivalent_messages_requests() -> None:
    previous_turns: list[list[dict[str, Any]]] = []
    for name, body, raw in interactions():
        req = anthropic_from_gemini(body, previous_turns)
        ours = to_gemini_request(req, GEMINI_25_FLASH)
        # A Messages request without `thinking` means no thinking: 2.5 Flash gets budget 0; the
        # recording left Gemini's default on. Nothing else is added or missing.
        assert ours["generationConfig"].pop("thinkingConfig") == {"thinkingBudget": 0}, name
        assert normalise(ours) == normalise(body), name
        previous_turns = (
            previous_turns + [client_history(raw)] if name.startswith("drives-a-tool-loop") else []
        )


def test_thought_signature_of_a_recorded_response_reaches_the_next_request_on_its_function_call() -> None:
    first_body, first_raw = recorded("drives-a-tool-loop#0")
    second_body, _ = recorded("drives-a-tool-loop#1")
    recorded_sig = chunks_of(first_raw)[0]["candidates"][0]["content"]["parts"][0]["thoughtSignature"]

    kept = client_history(first_raw)
    assert [b["type"] for b in kept] == ["thinking", "tool_use"]
    assert read_gateway_signature(kept[0]["signature"]) == ("gemini-next", recorded_sig)
    assert TOOL_ID.match(kept[1]["id"])

    req = anthropic_from_gemini(second_body, [kept])
    model_turn = to_gemini_request(req)["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"] == [
        {
            "functionCall": {"id": kept[1]["id"], "name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": recorded_sig,
        }
    ]
    assert second_body["contents"][1]["parts"][0]["thoughtSignature"] == recorded_sig


# --- recorded streams --------------------------------------------------------------------------


def expected_usage(chunks: list[dict[str, Any]]) -> tuple[int, int]:
    last = chunks[-1]["usageMetadata"]
    return last["promptTokenCount"], last.get("candidatesTokenCount", 0) + last.get("thoughtsTokenCount", 0)


@pytest.mark.parametrize(("name", "body", "raw"), interactions(), ids=[i[0] for i in interactions()])
def test_recorded_gemini_stream_becomes_a_well_formed_anthropic_stream(
    name: str, body: dict[str, Any], raw: bytes
) -> None:
    chunks = chunks_of(raw)
    events, translator = translate_stream(chunks)
    check_stream(events)
    final = accumulate(reparse(events))
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    calls = [p["functionCall"] for p in parts if "functionCall" in p]
    text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
    assert [(b["name"], b["input"]) for b in final["content"] if b["type"] == "tool_use"] == [
        (c["name"], c["args"]) for c in calls
    ]
    assert "".join(b["text"] for b in final["content"] if b["type"] == "text") == text
    signed = [p["thoughtSignature"] for p in parts if "thoughtSignature" in p]
    assert [read_gateway_signature(b["signature"]) for b in final["content"] if b["type"] == "thinking"] == [
        ("gemini-next", s) for s in signed
    ]
    assert final["stop_reason"] == ("tool_use" if calls else "end_turn")
    prompt, output = expected_usage(chunks)
    assert final["usage"]["input_tokens"] + final["usage"]["cache_read_input_tokens"] == prompt
    assert final["usage"]["output_tokens"] == output
    assert events[0][1]["message"]["usage"]["input_tokens"] == chunks[0]["usageMetadata"]["promptTokenCount"]
    assert translator.completed


def test_text_stream_in_two_chunks_is_one_text_block() -> None:
    _, raw = recorded("drives-a-tool-loop#1")
    events, _ = translate_stream(chunks_of(raw))
    final = accumulate(events)
    assert final["content"] == [
        {"type": "text", "text": "The weather in Paris is sunny with a temperature of 22 degrees."}
    ]
    assert final["usage"] == {
        "input_tokens": 148,
        "output_tokens": 15,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def test_thoughts_count_as_output_tokens() -> None:
    _, raw = recorded("streams-text#0")
    events, _ = translate_stream(chunks_of(raw))
    assert accumulate(events)["usage"]["output_tokens"] == 2 + 16


def test_minted_tool_ids_are_stable_for_the_same_response_and_distinct_across_responses() -> None:
    _, raw_a = recorded("drives-a-tool-loop#0")
    _, raw_b = recorded("streams-tool-call#0")
    first = [b["id"] for b in client_history(raw_a) if b["type"] == "tool_use"]
    again = [b["id"] for b in client_history(raw_a) if b["type"] == "tool_use"]
    other = [b["id"] for b in client_history(raw_b) if b["type"] == "tool_use"]
    assert first == again and first != other
    events, _ = translate_stream(chunks_of(raw_a), message_id=None)
    assert accumulate(events)["content"][1]["id"] == first[0]


def test_non_streaming_response_gives_the_same_message_as_the_stream() -> None:
    for name, _, raw in interactions():
        chunks = chunks_of(raw)
        whole = json.loads(json.dumps(chunks[-1]))
        whole["candidates"][0]["content"]["parts"] = [
            p for c in chunks for p in c["candidates"][0]["content"]["parts"]
        ]
        message = from_gemini_response(whole, "gemini-client")
        events, _ = translate_stream(chunks, message_id=message["id"])
        streamed = accumulate(events)
        assert message["content"] == streamed["content"], name
        assert message["stop_reason"] == streamed["stop_reason"] and message["usage"] == streamed["usage"], (
            name
        )
        assert message["id"] == "msg_" + whole["responseId"] and message["model"] == "gemini-client"


# --- stream behaviour --------------------------------------------------------------------------


def _chunk(
    parts: list[dict[str, Any]],
    finish: str | None = None,
    usage: dict[str, int] | None = None,
    rid: str = "r1",
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": usage or {"promptTokenCount": 10, "candidatesTokenCount": 3, "totalTokenCount": 13},
        "responseId": rid,
    }


def test_thought_summaries_become_thinking_sealed_by_the_signature_of_the_next_part() -> None:
    chunks = [
        _chunk([{"text": "**Planning** I should call the tool.", "thought": True}]),
        _chunk([{"text": " Then answer.", "thought": True}]),
        _chunk(
            [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
                    "thoughtSignature": "U0lHMQ==",
                }
            ]
        ),
        _chunk([{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}], finish="STOP"),
    ]
    events, _ = translate_stream(chunks)
    check_stream(events)
    content = accumulate(reparse(events))["content"]
    assert [b["type"] for b in content] == ["thinking", "tool_use", "tool_use"]
    assert content[0]["thinking"] == "**Planning** I should call the tool. Then answer."
    assert content[0]["signature"] == gateway_signature("gemini-next", "U0lHMQ==")

    req = {
        "model": "g",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "Weather in Rome and Oslo?"},
            {"role": "assistant", "content": content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": content[1]["id"], "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": content[2]["id"], "content": "rain"},
                ],
            },
        ],
    }
    model, user = to_gemini_request(req, GEMINI_3)["contents"][1:]
    assert [p.get("thoughtSignature") for p in model["parts"]] == ["U0lHMQ==", None]
    assert all("thought" not in p for p in model["parts"])
    assert [p["functionResponse"]["name"] for p in user["parts"]] == ["get_weather", "get_weather"]
    assert [p["functionResponse"]["id"] for p in user["parts"]] == [content[1]["id"], content[2]["id"]]


def test_signed_thought_part_goes_back_as_a_thought_part() -> None:
    chunks = [
        _chunk([{"text": "Deep thought.", "thought": True, "thoughtSignature": "VEhPVUdIVA=="}]),
        _chunk([{"text": "42"}], finish="STOP"),
    ]
    events, _ = translate_stream(chunks)
    content = accumulate(events)["content"]
    assert content[0]["signature"] == gateway_signature("gemini-thought", "VEhPVUdIVA==")
    req = {
        "model": "g",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": "more"},
        ],
    }
    assert to_gemini_request(req)["contents"][1]["parts"] == [
        {"text": "Deep thought.", "thought": True, "thoughtSignature": "VEhPVUdIVA=="},
        {"text": "42"},
    ]


def test_trailing_empty_text_signature_survives_the_round_trip() -> None:
    chunks = [
        _chunk([{"text": "Hello"}]),
        _chunk([{"text": "", "thoughtSignature": "VFJBSUw="}], finish="STOP"),
    ]
    events, _ = translate_stream(chunks)
    check_stream(events)
    content = accumulate(events)["content"]
    assert [b["type"] for b in content] == ["text", "thinking"]
    req = {
        "model": "g",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": "and?"},
        ],
    }
    assert to_gemini_request(req)["contents"][1]["parts"] == [
        {"text": "Hello"},
        {"text": "", "thoughtSignature": "VFJBSUw="},
    ]


def test_unsigned_thought_summaries_are_not_sent_back() -> None:
    chunks = [_chunk([{"text": "musing", "thought": True}]), _chunk([{"text": "answer"}], finish="STOP")]
    events, _ = translate_stream(chunks)
    content = accumulate(events)["content"]
    assert read_gateway_signature(content[0]["signature"]) == ("gemini-thought", "")
    req = {
        "model": "g",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": "r"},
        ],
    }
    assert to_gemini_request(req)["contents"][1]["parts"] == [{"text": "answer"}]


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("STOP", "end_turn"),
        ("MAX_TOKENS", "max_tokens"),
        ("SAFETY", "refusal"),
        ("RECITATION", "refusal"),
        ("MALFORMED_FUNCTION_CALL", "end_turn"),
    ],
)
def test_finish_reasons_map_to_stop_reasons(finish: str, stop: str) -> None:
    events, _ = translate_stream([_chunk([{"text": "x"}], finish=finish)])
    check_stream(events)
    assert accumulate(events)["stop_reason"] == stop


def test_blocked_prompt_ends_as_an_empty_refusal() -> None:
    chunk = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    }
    events, translator = translate_stream([chunk])
    check_stream(events)
    final = accumulate(events)
    assert final["content"] == [] and final["stop_reason"] == "refusal" and translator.completed


def test_cached_content_tokens_are_split_out_of_input() -> None:
    usage = {
        "promptTokenCount": 1000,
        "cachedContentTokenCount": 800,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 7,
        "toolUsePromptTokenCount": 20,
    }
    events, _ = translate_stream([_chunk([{"text": "ok"}], finish="STOP", usage=usage)])
    assert accumulate(events)["usage"] == {
        "input_tokens": 220,
        "output_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 800,
        "output_tokens_details": {"thinking_tokens": 7},  # thoughts are part of output_tokens
    }


def test_stream_without_finish_reason_closes_but_is_not_completed() -> None:
    events, translator = translate_stream([_chunk([{"text": "cut"}])])
    check_stream(events)
    assert not translator.completed


def test_mid_stream_failure_and_upstream_error_objects_end_with_an_error_event() -> None:
    translator = GeminiStreamTranslator("g", "msg_1")
    events = translator.feed(_chunk([{"text": "par"}]))
    events += translator.fail("overloaded_error", "UNAVAILABLE")
    check_stream(events)
    assert events[-1][1]["error"] == {"type": "overloaded_error", "message": "UNAVAILABLE"}
    translator = GeminiStreamTranslator("g", "msg_2")
    events = translator.feed(_chunk([{"text": "par"}]))
    events += translator.feed({"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}})
    check_stream(events)
    assert events[-1][0] == "error" and translator.finish() == []


def test_gemini_3_function_call_ids_are_kept_and_sanitised() -> None:
    chunk = _chunk(
        [{"functionCall": {"id": "fc-1.a/b", "name": "f", "args": {}}, "thoughtSignature": "eA=="}],
        finish="STOP",
    )
    events, _ = translate_stream([chunk])
    check_stream(events)
    assert accumulate(events)["content"][1]["id"] == "fc-1_a_b"


# --- request mapping ---------------------------------------------------------------------------


def _req(**extra: Any) -> dict[str, Any]:
    return {"model": "g", "max_tokens": 512, "messages": [{"role": "user", "content": "hi"}], **extra}


TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather",
        "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"anyOf": [{"const": "c"}, {"type": "null"}]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    {"name": "list_files", "input_schema": {"type": "object", "properties": {}}},
]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"mode": "AUTO"}),
        ({"type": "any"}, {"mode": "ANY"}),
        ({"type": "none"}, {"mode": "NONE"}),
        ({"type": "tool", "name": "get_weather"}, {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice_maps_to_function_calling_mode(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    body = to_gemini_request(_req(tools=TOOLS, tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_tool_schemas_are_sanitised_and_empty_parameters_left_out() -> None:
    decls = to_gemini_request(_req(tools=TOOLS))["tools"][0]["functionDeclarations"]
    assert decls == [
        {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["c"], "nullable": True},
                },
                "required": ["city"],
            },
        },
        {"name": "list_files"},
    ]
    assert set(decls[0]["parameters"]) <= GEMINI_SCHEMA_KEYWORDS


def test_tool_result_needs_the_name_of_its_call_and_carries_is_error() -> None:
    req = _req(
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Calling."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "X"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "also this"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": [{"type": "text", "text": "no such city"}],
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_unknown", "content": "stray"}],
            },
        ],
    )
    contents = to_gemini_request(req)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [
        {"text": "Calling."},
        {
            "functionCall": {"id": "toolu_1", "name": "get_weather", "args": {"city": "X"}},
            "thoughtSignature": DUMMY_SIGNATURE,
        },
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"id": "toolu_1", "name": "get_weather", "response": {"error": "no such city"}}},
        {"text": "also this"},
        {"text": "[result of tool call toolu_unknown]\nstray"},
    ]


def test_dummy_signature_goes_only_on_the_first_call_of_each_model_turn() -> None:
    req = _req(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "a", "name": "f", "input": {}},
                    {"type": "tool_use", "id": "b", "name": "f", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "a"},
                    {"type": "tool_result", "tool_use_id": "b"},
                ],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c", "content": "done"}]},
        ]
    )
    contents = to_gemini_request(req)["contents"]
    assert [p.get("thoughtSignature") for p in contents[1]["parts"]] == [DUMMY_SIGNATURE, None]
    assert [p.get("thoughtSignature") for p in contents[3]["parts"]] == [DUMMY_SIGNATURE]
    assert (
        "thoughtSignature"
        not in to_gemini_request(req, GeminiDialect(dummy_signature=False))["contents"][1]["parts"][0]
    )


def test_anthropic_signed_thinking_never_reaches_gemini() -> None:
    req = _req(
        messages=[
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "claude secret", "signature": "EqQBCkgIARAB"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {
                        "type": "thinking",
                        "thinking": "deepseek notes",
                        "signature": gateway_signature("reasoning"),
                    },
                    {"type": "text", "text": "answer"},
                ],
            },
            {"role": "user", "content": "next"},
        ]
    )
    body = to_gemini_request(req)
    assert body["contents"][1]["parts"] == [{"text": "answer"}]
    assert "secret" not in orjson.dumps(body).decode()


def test_images_in_tool_results_go_in_function_response_parts_on_gemini_3_and_beside_it_on_2_5() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    req = _req(
        messages=[
            {"role": "user", "content": "shot"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "here"}, image],
                    }
                ],
            },
        ]
    )
    inline = {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
    g3 = to_gemini_request(req, GEMINI_3)["contents"][2]["parts"]
    assert g3 == [
        {
            "functionResponse": {
                "id": "t1",
                "name": "screenshot",
                "response": {"output": "here"},
                "parts": [inline],
            }
        }
    ]
    g25 = to_gemini_request(req, GEMINI_25_FLASH)["contents"][2]["parts"]
    assert g25 == [
        {"functionResponse": {"id": "t1", "name": "screenshot", "response": {"output": "here"}}},
        {"text": "Attachments from tool result t1:"},
        inline,
    ]
    assert any("tool_result" in c for c in CAVEATS)


def test_system_user_media_and_generation_settings_are_mapped() -> None:
    req = _req(
        system=[
            {"type": "text", "text": "Be exact."},
            {"type": "text", "text": "Cite.", "cache_control": {"type": "ephemeral"}},
        ],
        temperature=0.4,
        top_p=0.8,
        top_k=20,
        stop_sequences=["1", "2", "3", "4", "5", "6"],
        metadata={"user_id": "u"},
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/webp", "data": "UklG"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png?x=1"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                    },
                ],
            },
            {"role": "user", "content": "What are these?"},
            {"role": "system", "content": "Answer in German."},
            {"role": "assistant", "content": "Bilder."},
        ],
    )
    body = to_gemini_request(req)
    assert body["systemInstruction"] == {
        "parts": [{"text": "Be exact."}, {"text": "Cite."}, {"text": "Answer in German."}]
    }
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"inlineData": {"mimeType": "image/webp", "data": "UklG"}},
                {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png?x=1"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
                {"text": "What are these?"},
            ],
        },
        {"role": "model", "parts": [{"text": "Bilder."}]},
    ]
    gen = body["generationConfig"]
    assert (
        gen["temperature"] == 0.4
        and gen["topP"] == 0.8
        and gen["topK"] == 20
        and gen["maxOutputTokens"] == 512
    )
    assert gen["stopSequences"] == ["1", "2", "3", "4", "5"]
    assert "u" not in orjson.dumps({k: v for k, v in body.items() if k != "contents"}).decode().split('"')


@pytest.mark.parametrize(
    ("dialect", "thinking", "effort", "expected"),
    [
        (GENERIC, None, None, None),
        (
            GENERIC,
            {"type": "enabled", "budget_tokens": 4000},
            None,
            {"thinkingBudget": 4000, "includeThoughts": True},
        ),
        (GEMINI_25_FLASH, None, None, {"thinkingBudget": 0}),
        (GEMINI_25_PRO, None, None, {"thinkingBudget": 128}),
        (
            GEMINI_25_FLASH,
            {"type": "enabled", "budget_tokens": 31999},
            None,
            {"thinkingBudget": 24576, "includeThoughts": True},
        ),
        (
            GEMINI_25_FLASH,
            {"type": "enabled", "budget_tokens": 2000},
            None,
            {"thinkingBudget": 2000, "includeThoughts": True},
        ),
        (GEMINI_25_FLASH, {"type": "adaptive"}, None, {"thinkingBudget": -1, "includeThoughts": True}),
        (
            GEMINI_25_FLASH,
            {"type": "adaptive", "display": "omitted"},
            "low",
            {"thinkingBudget": 2048, "includeThoughts": False},
        ),
        (GEMINI_3, None, None, {"thinkingLevel": "low"}),
        (
            GEMINI_3,
            {"type": "enabled", "budget_tokens": 2000},
            None,
            {"thinkingLevel": "low", "includeThoughts": True},
        ),
        (GEMINI_3, {"type": "adaptive"}, "medium", {"thinkingLevel": "high", "includeThoughts": True}),
        (GEMINI_3, {"type": "disabled"}, None, {"thinkingLevel": "low"}),
    ],
)
def test_thinking_maps_to_thinking_config(
    dialect: GeminiDialect,
    thinking: dict[str, Any] | None,
    effort: str | None,
    expected: dict[str, Any] | None,
) -> None:
    extra: dict[str, Any] = {"max_tokens": 64000}
    if thinking:
        extra["thinking"] = thinking
    if effort:
        extra["output_config"] = {"effort": effort}
    assert to_gemini_request(_req(**extra), dialect)["generationConfig"].get("thinkingConfig") == expected


def test_consecutive_turns_of_one_role_are_merged() -> None:
    req = _req(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": "d"},
        ]
    )
    assert to_gemini_request(req)["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
    ]


def test_tool_names_gemini_rejects_are_renamed_and_restored() -> None:
    req = _req(
        tools=[
            {"name": "9lives", "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}
        ]
    )
    assert to_gemini_request(req)["tools"][0]["functionDeclarations"][0]["name"] == "_9lives"
    names = gemini_tool_names(req)
    events, _ = translate_stream(
        [_chunk([{"functionCall": {"name": "_9lives", "args": {"n": 1}}}], finish="STOP")], tool_names=names
    )
    assert accumulate(events)["content"][0]["name"] == "9lives"
