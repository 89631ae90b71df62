"""POST /v1/responses for every model, through the real `openai` SDK's ``client.responses``:
natively to a Responses upstream (the strict fake of OpenAI) and translated to Claude, Gemini and
DeepSeek (the simulated upstreams speak each vendor's wire); tool loops, thinking signatures that
survive them, errors."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

from conftest import Gateway
from fakeupstream import Answer, FakeUpstream, sse_answer
from responses_fake import StrictResponses, encrypted_for
from responses_support import check_responses_stream
from test_anthropic_stream import ANTHROPIC_SDK

MODELS = ["claude-sonnet-4-6", "gpt-5-5", "gemini-3-1-pro", "deepseek-v4-pro"]
TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}}]
STATELESS: dict[str, Any] = {"store": False, "include": ["reasoning.encrypted_content"],
                             "reasoning": {"effort": "low", "summary": "auto"}}


def oai(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def collect(stream: Any) -> tuple[list[dict[str, Any]], Any]:
    events = [e.to_dict() for e in stream]
    return events, check_responses_stream(events)


@pytest.mark.parametrize("model", MODELS)
def test_responses_create_reaches_every_model_streamed_and_not(gateway: Gateway, fake: FakeUpstream, acct,
                                                                model: str) -> None:
    fake.handler = StrictResponses()
    c = oai(gateway, acct["key"])
    r = c.responses.create(model=model, input="hi", instructions="be brief", **STATELESS)
    assert r.object == "response" and r.status == "completed"
    assert r.model == model
    assert r.output_text
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    events, final = collect(c.responses.create(model=model, input="hi", stream=True, **STATELESS))
    assert events[-1]["type"] == "response.completed"
    assert final.output_text
    assert final.model == model


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_function_tool_loop_runs_on_every_model(gateway: Gateway, fake: FakeUpstream, acct, model: str,
                                                  stream: bool) -> None:
    fake.handler = StrictResponses()
    c = oai(gateway, acct["key"])
    history: list[Any] = [{"role": "user", "content": "use the tool get_weather for Paris"}]

    def turn() -> Any:
        if stream:
            events, final = collect(c.responses.create(model=model, input=history, tools=TOOLS, stream=True,
                                                       **STATELESS))
            assert events[-1]["type"] == "response.completed"
            return final
        return c.responses.create(model=model, input=history, tools=TOOLS, **STATELESS)

    first = turn()
    calls = [i for i in first.output if i.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    orjson.loads(calls[0].arguments)
    history += [i.model_dump(exclude_none=True) for i in first.output]
    history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "22C and sunny"})
    second = turn()
    assert not [i for i in second.output if i.type == "function_call"]
    assert second.output_text
    if model == "gpt-5-5":
        assert "22C and sunny" in second.output_text  # the strict fake verified the replayed reasoning item
        sent = fake.requests_to("/openai-responses/responses")[-1].json()
        assert sent["model"] == "gpt-5.5"
        reasoning = [i for i in sent["input"] if i.get("type") == "reasoning"]
        assert reasoning and reasoning[0]["encrypted_content"] == encrypted_for(first.id)


def test_native_route_passes_the_body_and_the_stream_through_unchanged(gateway: Gateway, fake: FakeUpstream,
                                                                       acct) -> None:
    fake.handler = StrictResponses()
    body = {"model": "gpt-5.5", "input": [{"role": "developer", "content": "be brief"},
                                          {"role": "user", "content": "hi"}],
            "stream": True, "prompt_cache_key": "abc", "text": {"verbosity": "low"}, **STATELESS}
    r = httpx.post(gateway.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {acct['key']}",
                                                                     "x-codex-window-id": "w1"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = fake.requests_to("/openai-responses/responses")[-1]
    assert got.json() == {**body, "model": "gpt-5.5"}
    assert got.headers["authorization"] == "Bearer upstream-secret-openai-responses"
    assert got.headers["x-codex-window-id"] == "w1"
    from responses_fake import answer_for, sse, stream_events
    expected = b"".join(sse(stream_events(answer_for(got.json(), 1))))
    assert r.content == expected


def test_claude_thinking_signature_survives_a_codex_style_tool_loop(gateway: Gateway, fake: FakeUpstream,
                                                                   acct) -> None:
    """Claude's signed thinking goes to the client inside encrypted_content and back to Claude unchanged."""
    raw = (ANTHROPIC_SDK / "fixtures/fable-fallback/stream-a-refusal.sse").read_text()
    thinking_frames = raw.split("event: content_block_start", 2)
    assert len(thinking_frames) > 1
    sig = "EqQBCkgIARABGAIiQLg7bQ2BSiGnatureFromClaude=="
    frames = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                                "model": "claude-sonnet-4-6", "content": [],
                                                                "stop_reason": None, "stop_sequence": None,
                                                                "usage": {"input_tokens": 30, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "Need the weather."}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": sig}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 40}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    fake.queue(sse_answer("".join(f"event: {n}\ndata: {orjson.dumps(d).decode()}\n\n" for n, d in frames),
                          chunk_size=50))
    c = oai(gateway, acct["key"])
    history: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    events, first = collect(c.responses.create(model="claude-sonnet-4-6", input=history, tools=TOOLS, stream=True,
                                               **STATELESS))
    assert [i.type for i in first.output] == ["reasoning", "function_call"]
    assert first.output[0].summary[0].text == "Need the weather."
    sent = fake.requests_to("/anthropic/v1/messages")[-1].json()
    assert sent["thinking"]["type"] == "enabled" and sent["max_tokens"] > sent["thinking"]["budget_tokens"]
    history += [i.model_dump(exclude_none=True) for i in first.output]
    history.append({"type": "function_call_output", "call_id": first.output[1].call_id, "output": "sunny"})
    second = c.responses.create(model="claude-sonnet-4-6", input=history, tools=TOOLS, **STATELESS)
    assert second.output_text
    replay = fake.requests_to("/anthropic/v1/messages")[-1].json()
    assert replay["messages"][1]["content"][:2] == [
        {"type": "thinking", "thinking": "Need the weather.", "signature": sig},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}]
    assert replay["messages"][2]["content"][0]["tool_use_id"] == "toolu_01A"
    assert "thinking" in replay  # the tool loop keeps thinking on: its signed block came back


def test_gemini_thought_signature_survives_the_tool_loop(gateway: Gateway, fake: FakeUpstream, acct) -> None:
    c = oai(gateway, acct["key"])
    history: list[Any] = [{"role": "user", "content": "use the tool get_weather"}]
    first = c.responses.create(model="gemini-3-1-pro", input=history, tools=TOOLS, **STATELESS)
    call = next(i for i in first.output if i.type == "function_call")
    history += [i.model_dump(exclude_none=True) for i in first.output]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny"})
    c.responses.create(model="gemini-3-1-pro", input=history, tools=TOOLS, **STATELESS)
    sent = fake.requests_to(":generateContent")[-1].json()
    parts = [p for content in sent["contents"] for p in content["parts"] if "functionCall" in p]
    assert parts and parts[0]["thoughtSignature"] == "c2ltdWxhdGVk"  # what the simulated Gemini signed


def test_custom_and_hosted_codex_tools_reach_a_translated_model_or_are_dropped(gateway: Gateway,
                                                                              fake: FakeUpstream, acct) -> None:
    tools: list[Any] = [{"type": "custom", "name": "apply_patch", "description": "Apply a patch",
                         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
                        {"type": "local_shell"}, {"type": "web_search"},
                        {"type": "namespace", "name": "agents", "description": "x", "tools": []}]
    r = oai(gateway, acct["key"]).responses.create(model="claude-sonnet-4-6", input="use the tool now",
                                                   tools=tools, **STATELESS)
    sent = fake.requests_to("/anthropic/v1/messages")[-1].json()
    assert [t["name"] for t in sent["tools"]] == ["apply_patch"]
    assert sent["tools"][0]["input_schema"]["required"] == ["input"]
    call = r.output[-1]
    assert call.type == "custom_tool_call" and call.name == "apply_patch"


REFUSED = [({"previous_response_id": "resp_1"}, "previous_response_id"), ({"store": True}, "store"),
           ({"input": []}, "input"), ({"max_output_tokens": 0}, "max_output_tokens")]
BAD_ITEMS = [({"input": [{"role": "robot", "content": "x"}]}, "input[0].role")]  # native bodies: OpenAI judges items


@pytest.mark.parametrize(("model", "extra", "param"),
                         [(m, e, p) for m in ("gpt-5-5", "claude-sonnet-4-6") for e, p in REFUSED]
                         + [("claude-sonnet-4-6", e, p) for e, p in BAD_ITEMS])
def test_requests_the_gateway_cannot_serve_get_an_openai_400_naming_the_field(
        gateway: Gateway, fake: FakeUpstream, acct, model: str, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai(gateway, acct["key"]).responses.create(**{"model": model, "input": "hi", **extra})
    assert exc.value.status_code == 400
    assert exc.value.body["param"] == param  # type: ignore[index]
    assert not fake.received


def test_unknown_model_and_wrong_key_get_openai_errors(gateway: Gateway, acct) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oai(gateway, acct["key"]).responses.create(model="no-such-model", input="hi")
    assert nf.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        oai(gateway, "sk-byts-" + "x" * 40).responses.create(model="gpt-5-5", input="hi")
    r = httpx.get(gateway.url + "/v1/responses/resp_123", headers={"authorization": f"Bearer {acct['key']}"})
    assert r.status_code in (404, 405) and "error" in r.json() and "type" not in r.json()


@pytest.mark.parametrize("model", ["gpt-5-5", "claude-sonnet-4-6"])
@pytest.mark.parametrize("status", [429, 500])
def test_upstream_failures_before_the_first_byte_are_openai_errors_and_unbilled(
        gateway: Gateway, fake: FakeUpstream, acct, model: str, status: int) -> None:
    body = (b'{"error":{"message":"slow down","type":"rate_limit_error"}}' if status == 429 else b'{"error":{}}')
    fake.queue(*[Answer(status=status, body=body)] * 3)
    r = httpx.post(gateway.url + "/v1/responses", json={"model": model, "input": "hi", "stream": True},
                   headers={"authorization": f"Bearer {acct['key']}"}, timeout=30)
    assert r.status_code == (429 if status == 429 else 500)
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    rid = r.headers["request-id"]
    gateway.wait_settled([rid])
    assert gateway.query("SELECT cost, status FROM usage_records WHERE request_id = ?", rid) == [(0, "failed")]


@pytest.mark.parametrize("model", ["gpt-5-5", "claude-sonnet-4-6"])
def test_a_stream_cut_mid_way_ends_in_response_failed_unbilled_and_the_retry_is_served(
        gateway: Gateway, fake: FakeUpstream, acct, model: str) -> None:
    fake.handler = StrictResponses()
    strict = fake.handler
    if model == "gpt-5-5":
        from responses_fake import answer_for, sse, stream_events
        chunks = sse(stream_events(answer_for({"model": "gpt-5.5", "input": "hi"}, 9)))
        fake.handler = lambda got: Answer(chunks=chunks, cut_after=len(chunks) - 2,
                                          content_type="text/event-stream") if not fake.received[:-1] else strict(got)
    else:
        from deployments import stream_chunks
        fake.queue(Answer(chunks=stream_chunks(["Hel", "lo"]), cut_after=4, content_type="text/event-stream"))
    c = oai(gateway, acct["key"])
    raw = c.responses.with_raw_response.create(model=model, input="hi", stream=True)
    events = [e.to_dict() for e in raw.parse()]
    assert events[-1]["type"] == "response.failed"
    check_responses_stream(events)
    rid = raw.headers["request-id"]
    events, final = collect(c.responses.create(model=model, input="hi", stream=True))  # Codex resends
    assert final.status == "completed"
    gateway.wait_settled([rid])
    assert gateway.query("SELECT cost, status FROM usage_records WHERE request_id = ?", rid) == [(0, "failed")]
    assert gateway.query("SELECT COUNT(*) FROM ledger WHERE request_id = ? AND kind = 'charge'", rid) == [(0,)]


def test_models_list_offers_responses_on_every_model(gateway: Gateway, acct) -> None:
    data = httpx.get(gateway.url + "/v1/models", headers={"authorization": f"Bearer {acct['key']}"}).json()["data"]
    entries = {m["id"]: m for m in data}
    assert entries["gpt-5-5"]["protocols_aggregate"][0] == "responses"
    assert "responses:translated" in entries["claude-sonnet-4-6"]["protocols_aggregate"]
    assert any(c.startswith("On /v1/responses:") for c in entries["claude-sonnet-4-6"]["caveats"])
