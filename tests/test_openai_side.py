"""The OpenAI side: /v1/chat/completions for every model, through the real `openai` SDK."""

from __future__ import annotations

import json

import httpx
import openai
import orjson
import pytest

from conftest import RECORDED, Gateway
from fakeupstream import Answer, FakeUpstream, json_answer, sse_answer
from test_native_messages import recorded_anthropic_streams

OPENAI_BINS = RECORDED / "openai__openai-python" / ".inline-snapshot" / "external"
OPENCODE = RECORDED / "anomalyco__opencode" / "packages" / "llm" / "test" / "fixtures" / "recordings"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
MODELS = ["claude-sonnet-4-6", "gpt-5-5", "gemini-3-1-pro", "deepseek-v3-anthropic"]


def oai(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def recorded_chat_streams() -> list[tuple[str, str]]:
    out = [(p.name[:12], p.read_text()) for p in sorted(OPENAI_BINS.glob("*.bin"))]
    for p in sorted((OPENCODE / "openai-chat").glob("*.json")):
        for i, inter in enumerate(json.loads(p.read_text())["interactions"]):
            if "event-stream" in inter["response"]["headers"].get("content-type", ""):
                out.append((f"{p.stem}#{i}", inter["response"]["body"]))
    return out


# ---------------------------------------------------------------- every model, the SDK's way


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_non_stream_and_stream_reach_every_model(gateway: Gateway, fake: FakeUpstream, acct, model):
    c = oai(gateway, acct["key"])
    r = c.chat.completions.create(model=model, messages=[{"role": "system", "content": "be brief"},
                                                         {"role": "user", "content": "hi"}])
    assert r.object == "chat.completion"
    assert r.model == model
    assert "simulated" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    chunks = list(c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "simulated" in text
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert all(ch.model == model for ch in chunks)
    no_usage = list(c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(ch.choices for ch in no_usage)


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_with_tools_gets_tool_calls(gateway: Gateway, fake: FakeUpstream, acct, model):
    c = oai(gateway, acct["key"])
    msgs = [{"role": "user", "content": "use the tool for Paris"}]
    r = c.chat.completions.create(model=model, messages=msgs, tools=TOOLS)
    assert r.choices[0].finish_reason == "tool_calls"
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    chunks = list(c.chat.completions.create(model=model, messages=msgs, tools=TOOLS, stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert calls[0].index == 0 and calls[0].id and calls[0].function.name == "get_weather"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("model,path", [("claude-sonnet-4-6", "/anthropic/v1/messages"),
                                        ("gemini-3-1-pro", "/gemini/v1beta/models/")])
@pytest.mark.parametrize("stream", [False, True])
def test_full_tool_loop(gateway: Gateway, fake: FakeUpstream, acct, model, path, stream):
    c = oai(gateway, acct["key"])
    msgs: list[dict] = [{"role": "user", "content": "use the tool for Paris"}]
    if stream:
        chunks = list(c.chat.completions.create(model=model, messages=msgs, tools=TOOLS, stream=True))
        tc = [t for ch in chunks if ch.choices for t in (ch.choices[0].delta.tool_calls or [])]
        call_id, name, args = tc[0].id, tc[0].function.name, "".join(t.function.arguments or "" for t in tc)
    else:
        r = c.chat.completions.create(model=model, messages=msgs, tools=TOOLS)
        call = r.choices[0].message.tool_calls[0]
        call_id, name, args = call.id, call.function.name, call.function.arguments
    msgs.append({"role": "assistant", "content": None,
                 "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]})
    msgs.append({"role": "tool", "tool_call_id": call_id, "content": "18 degrees and sunny"})
    final = c.chat.completions.create(model=model, messages=msgs, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert "simulated" in final.choices[0].message.content
    sent = [r for r in fake.received if path in r.path][-1].json()
    if model.startswith("claude"):
        results = [b for m in sent["messages"] for b in m["content"] if isinstance(m["content"], list)
                   and b.get("type") == "tool_result"]
        uses = [b for m in sent["messages"] for b in m["content"] if isinstance(m["content"], list)
                and b.get("type") == "tool_use"]
        assert results[0]["tool_use_id"] == uses[0]["id"]
        assert "18 degrees" in json.dumps(results[0]["content"])
    else:
        parts = [p for content in sent["contents"] for p in content["parts"]]
        (resp,) = [p["functionResponse"] for p in parts if "functionResponse" in p]
        assert resp["name"] == "get_weather"
        assert "18 degrees" in json.dumps(resp["response"])
        (fc,) = [p for p in parts if "functionCall" in p]
        assert fc.get("thoughtSignature")  # the signature Gemini sent comes back on its call


# ---------------------------------------------------------------- native OpenAI route


@pytest.mark.parametrize("name,body", recorded_chat_streams(), ids=lambda v: v if isinstance(v, str) and
                         len(v) < 60 else None)
def test_recorded_chat_stream_comes_back_byte_for_byte(gateway: Gateway, fake: FakeUpstream, acct, name, body):
    fake.queue(sse_answer(body, chunk_size=61))
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {acct['key']}"},
                      json={"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True},
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        raw = b"".join(r.iter_raw())
    assert r.status_code == 200
    assert raw == body.encode()
    sent = fake.requests_to("/openai/chat/completions")[-1].json()
    assert sent["model"] == "gpt-4o" and sent["stream_options"] == {"include_usage": True}


def test_native_openai_route_adds_usage_upstream_but_not_for_the_client(gateway: Gateway, fake: FakeUpstream, acct):
    body = next(b for n, b in recorded_chat_streams() if "continues-after-tool-result" in n)
    fake.queue(sse_answer(body, chunk_size=50))
    chunks = list(oai(gateway, acct["key"]).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert fake.requests_to("/openai/chat/completions")[-1].json()["stream_options"]["include_usage"] is True
    assert all(ch.choices for ch in chunks)  # the usage-only chunk the client did not ask for is held back
    gateway.wait_settled(account_id=acct["account_id"], count=1)
    (tokens,) = gateway.query("SELECT input_tokens + output_tokens FROM usage_records WHERE account_id = ?",
                              acct["account_id"])[0]
    assert tokens > 0


def test_native_openai_non_stream_body_unchanged(gateway: Gateway, fake: FakeUpstream, acct):
    raw = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hey", "refusal": None},
                                     "logprobs": None, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}, "x_future": 1})
    fake.queue(Answer(body=raw))
    r = httpx.post(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {acct['key']}"},
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert r.content == raw


def test_renamed_model_is_named_as_asked_in_every_chunk(gateway: Gateway, fake: FakeUpstream, acct):
    body = next(b for n, b in recorded_chat_streams() if n.startswith("e2aad469"))
    fake.queue(sse_answer(body, chunk_size=77))
    chunks = list(oai(gateway, acct["key"]).chat.completions.create(
        model="gpt-5-5-chat", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert {ch.model for ch in chunks} == {"gpt-5-5-chat"}
    assert fake.requests_to("/openai/chat/completions")[-1].json()["model"] == "gpt-5.5"


# ---------------------------------------------------------------- Anthropic recordings to OpenAI clients


@pytest.mark.parametrize("name,body", recorded_anthropic_streams(), ids=lambda v: v if isinstance(v, str) and
                         len(v) < 80 else None)
def test_anthropic_recording_reaches_openai_sdk_as_valid_chunks(gateway: Gateway, fake: FakeUpstream, acct, name,
                                                                 body):
    from bytespike.protocols.sse import SSEParser

    fake.queue(sse_answer(body, chunk_size=89))
    chunks = list(oai(gateway, acct["key"]).chat.completions.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    events = [(e.event, json.loads(e.data)) for e in SSEParser().feed(body.encode()) if e.data.strip()]
    text = "".join(e["delta"]["text"] for n, e in events if n == "content_block_delta"
                   and e["delta"]["type"] == "text_delta")
    got = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert got == text
    tool_names = [e["content_block"]["name"] for n, e in events if n == "content_block_start"
                  and e["content_block"]["type"] == "tool_use"]
    got_names = [tc.function.name for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])
                 if tc.function and tc.function.name]
    assert got_names == tool_names
    if any(n == "error" for n, _ in events) or not any(n == "message_stop" for n, _ in events):
        return
    usage = {}
    for n, e in events:
        if n == "message_start":
            usage.update({k: v for k, v in (e["message"].get("usage") or {}).items() if v is not None})
        if n == "message_delta":
            usage.update({k: v for k, v in (e.get("usage") or {}).items() if v is not None})
    final = chunks[-1]
    assert final.choices == []
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_read_input_tokens") or 0) + \
        (usage.get("cache_creation_input_tokens") or 0)
    assert final.usage.prompt_tokens == prompt
    assert final.usage.completion_tokens == usage.get("output_tokens", 0)


def test_anthropic_tool_use_reaches_openai_sdk_with_argument_deltas(gateway: Gateway, fake: FakeUpstream, acct):
    rec = json.loads((OPENCODE / "anthropic-messages" / "streams-tool-call.json").read_text())
    fake.queue(sse_answer(rec["interactions"][0]["response"]["body"], chunk_size=40))
    stream = oai(gateway, acct["key"]).chat.completions.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "weather in Paris"}], tools=TOOLS, stream=True)
    chunks = list(stream)
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "toolu_01NGuJD7Pku4wqQzegRiBDyH" and calls[0].function.name == "get_weather"
    assert all(tc.index == 0 for tc in calls)
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Paris"}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == ["tool_calls"]


# ---------------------------------------------------------------- same money, same windows


def test_openai_side_costs_the_same_as_messages_and_shares_windows(gateway: Gateway, fake: FakeUpstream):
    a = gateway.account(limits=["1d:requests=2"])
    usage = {"input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 300,
             "cache_creation_input_tokens": 0}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
               "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": None,
               "usage": usage}
    fake.queue(json_answer(message), json_answer(message))
    r1 = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": a["key"], "anthropic-version": "2023-06-01"},
                    json={"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [{"role": "user",
                                                                                        "content": "hi"}]})
    r2 = httpx.post(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {a['key']}"},
                    json={"model": "claude-sonnet-4-6", "max_tokens": 100,
                          "messages": [{"role": "user", "content": "hi"}]})
    assert r1.status_code == r2.status_code == 200
    assert r2.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 300
    gateway.wait_settled([r1.headers["request-id"], r2.headers["request-id"]])
    costs = gateway.query("SELECT protocol, cost FROM usage_records WHERE account_id = ? ORDER BY id",
                          a["account_id"])
    assert [p for p, _ in costs] == ["anthropic", "openai"]
    assert costs[0][1] == costs[1][1] > 0
    r3 = httpx.post(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {a['key']}"},
                    json={"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]})
    assert r3.status_code == 429
    assert r3.json()["error"]["type"] == "rate_limit_error" and int(r3.headers["retry-after"]) > 0


# ---------------------------------------------------------------- errors in OpenAI's shape


def assert_openai_error(r: httpx.Response, status: int, fake: FakeUpstream | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["message"]
    assert r.headers["request-id"]
    assert "upstream-secret" not in r.text
    if fake is not None:
        assert str(fake.port) not in r.text
    return err


def chat(gw: Gateway, key: str | None, body=None, content=None):  # type: ignore[no-untyped-def]
    h = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.url + "/v1/chat/completions", headers=h, json=body if content is None else None,
                      content=content, timeout=30)


HI = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}


def test_openai_errors(gateway: Gateway, fake: FakeUpstream, acct):
    assert assert_openai_error(chat(gateway, acct["key"], content=b"{nope"), 400)["type"] == "invalid_request_error"
    err = assert_openai_error(chat(gateway, acct["key"], {"model": "claude-haiku-4-5"}), 400)
    assert err["param"] == "messages"
    assert assert_openai_error(chat(gateway, None, HI), 401)["type"] == "authentication_error"
    assert assert_openai_error(chat(gateway, "sk-byts-wrong", HI), 401)["code"] == "invalid_api_key"
    assert assert_openai_error(chat(gateway, acct["key"], {**HI, "model": "nope"}), 404)["param"] == "model"
    claude_only = gateway.account(group="claude-default")
    assert assert_openai_error(chat(gateway, claude_only["key"], {**HI, "model": "gpt-5-5"}), 403)
    broke = gateway.account(usd="0")
    assert assert_openai_error(chat(gateway, broke["key"], HI), 402)["code"] == "insufficient_quota"
    big = {**HI, "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    assert assert_openai_error(chat(gateway, acct["key"], big), 413)
    for status in (429, 500, 529):
        fake.queue(json_answer({"type": "error", "error": {"type": "x", "message": "no"}}, status=status))
        assert_openai_error(chat(gateway, acct["key"], HI), status, fake)
    assert_openai_error(chat(gateway, acct["key"], {**HI, "model": "claude-unreachable"}), 529)
    err = assert_openai_error(chat(gateway, acct["key"], {**HI, "n": 2}), 400)
    assert "n" in err["message"]


def test_openai_stream_broken_midway_ends_with_error_payload(gateway: Gateway, fake: FakeUpstream, acct):
    start = ('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
             '"role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,'
             '"usage":{"input_tokens":5,"output_tokens":1}}}\n\n')
    fake.queue(sse_answer(start + "x" * 10, chunk_size=len(start), cut_after=1))
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {acct['key']}"},
                      json={**HI, "stream": True}) as r:
        raw = b"".join(r.iter_raw()).decode()
    last = [line for line in raw.split("\n\n") if line.strip()][-1]
    assert last.startswith("data: ") and "error" in json.loads(last[6:])
    fake.queue(sse_answer(start, cut_after=1))
    with pytest.raises(openai.APIError):
        list(oai(gateway, acct["key"]).chat.completions.create(**HI, stream=True))


def test_models_in_openai_shape(gateway: Gateway, acct):
    models = oai(gateway, acct["key"]).models.list()
    ids = {m.id for m in models}
    assert {"claude-sonnet-4-6", "gpt-5-5", "gemini-3-1-pro"} <= ids
    raw = httpx.get(gateway.url + "/v1/models", headers={"authorization": f"Bearer {acct['key']}"}).json()
    assert raw["object"] == "list"
    gpt = next(m for m in raw["data"] if m["id"] == "gpt-5-5")
    assert gpt["protocols_aggregate"] == ["responses", "anthropic:translated", "openai:translated",
                                          "gemini:translated"]
    claude = next(m for m in raw["data"] if m["id"] == "claude-sonnet-4-6")
    assert claude["protocols_aggregate"] == ["anthropic", "openai:translated", "gemini:translated",
                                             "responses:translated"]
    assert "claude-3-5-sonnet-20241022" in claude["aliases"]
    one = oai(gateway, acct["key"]).models.retrieve("gpt-5-5")
    assert one.id == "gpt-5-5"
