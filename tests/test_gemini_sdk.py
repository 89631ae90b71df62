"""google-genai code pointed at ByteSpike (``http_options.base_url``) reaches every model: Gemini
natively, Claude, OpenAI and DeepSeek through the Messages hub, function calling included."""

from __future__ import annotations

import json

import httpx
import pytest
from google import genai
from google.genai import errors, types

from conftest import Gateway
from fakeupstream import FakeUpstream

MODELS = ["gemini-3-1-pro", "claude-sonnet-4-6", "gpt-5-5", "deepseek-v4-pro"]
UPSTREAM_PATH = {"gemini-3-1-pro": "/gemini/v1beta/models/gemini-3.1-pro-preview:",
                 "claude-sonnet-4-6": "/anthropic/v1/messages", "gpt-5-5": "/openai-responses/responses",
                 "deepseek-v4-pro": "/deepseek/chat/completions"}
WEATHER = types.FunctionDeclaration(
    name="get_weather", description="Weather for a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TOOLS = [types.Tool(function_declarations=[WEATHER])]
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)


def client(gw: Gateway, key: str, api_version: str | None = None) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=gw.url, api_version=api_version, retry_options=types.HttpRetryOptions(attempts=1)))


def config(**kw: object) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(tools=TOOLS, automatic_function_calling=NO_AFC, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", MODELS)
def test_generate_content_and_its_stream_reach_every_model(gateway: Gateway, fake: FakeUpstream, acct, model):
    c = client(gateway, acct["key"])
    r = c.models.generate_content(model=model, contents="hi",
                                  config=types.GenerateContentConfig(system_instruction="be brief"))
    assert "simulated" in r.text
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata.prompt_token_count > 0 and r.usage_metadata.candidates_token_count > 0
    chunks = list(c.models.generate_content_stream(model=model, contents="hi"))
    assert "simulated" in "".join(ch.text or "" for ch in chunks)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count > 0
    assert fake.requests_to(UPSTREAM_PATH[model])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_function_calling_round_trip_on_every_model(gateway: Gateway, fake: FakeUpstream, acct, model, stream):
    c = client(gateway, acct["key"])
    ask = types.Content(role="user", parts=[types.Part(text="use the tool for Paris")])
    if stream:
        chunks = list(c.models.generate_content_stream(model=model, contents=[ask], config=config()))
        calls = [fc for ch in chunks for fc in ch.function_calls or []]
        model_content = types.Content(role="model", parts=[
            p for ch in chunks if ch.candidates and ch.candidates[0].content
            for p in ch.candidates[0].content.parts or [] if not p.thought])
    else:
        r = c.models.generate_content(model=model, contents=[ask], config=config())
        calls = r.function_calls or []
        model_content = r.candidates[0].content
    (call,) = calls
    assert call.name == "get_weather" and isinstance(call.args, dict)
    answer = types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        id=call.id, name=call.name, response={"output": "18 degrees and sunny"}))])
    final = c.models.generate_content(model=model, contents=[ask, model_content, answer], config=config())
    assert "simulated" in final.text and not final.function_calls
    sent = fake.requests_to(UPSTREAM_PATH[model])[-1].json()
    assert "18 degrees and sunny" in json.dumps(sent)
    if model == "claude-sonnet-4-6":
        uses = [b for m in sent["messages"] for b in m["content"] if b.get("type") == "tool_use"]
        results = [b for m in sent["messages"] for b in m["content"] if b.get("type") == "tool_result"]
        assert results[0]["tool_use_id"] == uses[0]["id"] == call.id
    elif model == "gemini-3-1-pro":  # native: what the SDK sent, the signature Gemini gave on its call included
        parts = [p for content in sent["contents"] for p in content["parts"]]
        assert next(p for p in parts if "functionCall" in p)["thoughtSignature"]
    elif model == "gpt-5-5":  # the Responses API: the call and its output paired by call_id
        outputs = [i for i in sent["input"] if i.get("type") == "function_call_output"]
        assert outputs and outputs[0]["call_id"] in {i.get("call_id") for i in sent["input"]
                                                     if i.get("type") == "function_call"}
    else:
        tool_msgs = [m for m in sent["messages"] if m["role"] == "tool"]
        assert tool_msgs and tool_msgs[0]["tool_call_id"]


def test_a_translated_answer_is_billed_and_recorded_as_gemini_translated_traffic(gateway: Gateway,
                                                                                 fake: FakeUpstream):
    a = gateway.account()
    r = httpx.post(gateway.url + "/v1beta/models/claude-sonnet-4-6:generateContent",
                   headers={"x-goog-api-key": a["key"]}, json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert r.status_code == 200, r.text
    r2 = httpx.post(gateway.url + "/v1beta/models/gemini-3-1-pro:generateContent",
                    params={"key": a["key"]}, json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert r2.status_code == 200, r2.text
    gateway.wait_settled([r.headers["request-id"], r2.headers["request-id"]])
    rows = gateway.query("SELECT protocol, model_asked, cost, status FROM usage_records WHERE account_id = ? "
                         "ORDER BY id", a["account_id"])
    assert [(p, m) for p, m, _, _ in rows] == [("gemini", "claude-sonnet-4-6"), ("gemini", "gemini-3-1-pro")]
    assert all(cost > 0 for _, _, cost, _ in rows)


def test_models_list_get_and_count_tokens_through_the_sdk(gateway: Gateway, fake: FakeUpstream, acct):
    c = client(gateway, acct["key"])
    names = {m.name for m in c.models.list()}
    assert {"models/gemini-3-1-pro", "models/claude-sonnet-4-6", "models/gpt-5-5"} <= names
    one = c.models.get(model="claude-sonnet-4-6")
    assert one.name == "models/claude-sonnet-4-6" and one.output_token_limit == 64000
    raw = httpx.get(gateway.url + "/v1beta/models", headers={"x-goog-api-key": acct["key"]}).json()
    entry = next(m for m in raw["models"] if m["name"] == "models/gemini-3-1-pro")
    assert entry["protocols_aggregate"] == ["gemini", "anthropic:translated", "openai:translated",
                                           "responses:translated"]
    claude = next(m for m in raw["models"] if m["name"] == "models/claude-sonnet-4-6")
    assert "gemini:translated" in claude["protocols_aggregate"]
    for model, upstream in (("gemini-3-1-pro", ":countTokens"), ("claude-sonnet-4-6", "/v1/messages/count_tokens")):
        counted = c.models.count_tokens(model=model, contents="how many tokens is this?")
        assert counted.total_tokens > 0
        assert fake.requests_to(upstream)
    assert c.models.count_tokens(model="gpt-5-5", contents="how many tokens is this?").total_tokens > 0


def test_the_v1_paths_and_bearer_keys_work_too(gateway: Gateway, fake: FakeUpstream, acct):
    v1 = client(gateway, acct["key"], api_version="v1")
    r = v1.models.generate_content(model="gpt-5-5", contents="hi")
    assert "simulated" in r.text
    bearer = httpx.post(gateway.url + "/v1/models/gemini-2.5-flash:generateContent",
                        headers={"authorization": f"Bearer {acct['key']}"},
                        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert bearer.status_code == 200 and bearer.json()["candidates"][0]["content"]["parts"][0]["text"]
    assert fake.requests_to("/gemini/v1beta/models/gemini-3.1-pro-preview:generateContent")


def test_sdk_errors_arrive_as_google_api_errors(gateway: Gateway, fake: FakeUpstream, acct):
    wrong, right = client(gateway, "sk-byts-wrong"), client(gateway, acct["key"])
    with pytest.raises(errors.ClientError) as exc:
        wrong.models.generate_content(model="gpt-5-5", contents="hi")
    assert exc.value.code == 401 and exc.value.status == "UNAUTHENTICATED"
    with pytest.raises(errors.ClientError) as exc:
        right.models.generate_content(model="no-such-model", contents="hi")
    assert exc.value.code == 404 and exc.value.status == "NOT_FOUND"
