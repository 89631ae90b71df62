"""Gemini clients on the wire: recorded Gemini streams through the native route byte for byte,
the JSON-array stream, translated streams, and every failure in Gemini's error shape."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest

from conftest import Gateway
from fakeupstream import Answer, FakeUpstream, json_answer, sse_answer
from test_translate_gemini import chunks_of, interactions

UPSTREAM = "/gemini/v1beta/models/gemini-3.1-pro-preview:"
HI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def post(gw: Gateway, path: str, key: str | None, body: Any = None, content: bytes | None = None,
         **kw: Any) -> httpx.Response:
    headers = {"x-goog-api-key": key} if key else {}
    return httpx.post(gw.url + path, headers=headers, json=body if content is None else None, content=content,
                      timeout=30, **kw)


def stream(gw: Gateway, path: str, key: str, body: Any) -> tuple[httpx.Response, bytes]:
    with httpx.stream("POST", gw.url + path, headers={"x-goog-api-key": key}, json=body, timeout=30) as r:
        return r, b"".join(r.iter_raw())


def assert_gemini_error(r: httpx.Response, code: int, status: str, fake: FakeUpstream | None = None) -> str:
    assert r.status_code == code, r.text
    err = r.json()["error"]
    assert (err["code"], err["status"]) == (code, status) and err["message"]
    assert r.headers["request-id"] and "upstream-secret" not in r.text
    if fake is not None:
        assert str(fake.port) not in r.text
    return str(err["message"])


# ---------------------------------------------------------------- native: byte for byte


@pytest.mark.parametrize("name,body,raw", interactions(), ids=[i[0] for i in interactions()])
def test_recorded_gemini_streams_replay_byte_for_byte_through_the_native_route(
        gateway: Gateway, fake: FakeUpstream, acct: dict, name: str, body: dict, raw: bytes) -> None:
    fake.queue(sse_answer(raw.decode(), chunk_size=37))
    sent = orjson.dumps(body)
    with httpx.stream("POST", gateway.url + "/v1beta/models/gemini-3-1-pro:streamGenerateContent",
                      params={"alt": "sse", "key": acct["key"]}, content=sent, timeout=30) as r:
        got = b"".join(r.iter_raw())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert got == raw
    (up,) = fake.received
    assert up.path == UPSTREAM.rstrip(":") + ":streamGenerateContent" and up.query == "alt=sse"
    assert up.body == sent  # the body goes up unchanged: the model is in the URL
    assert up.headers["x-goog-api-key"] == "upstream-secret-gemini"
    gateway.wait_settled([r.headers["request-id"]])
    usage = chunks_of(raw)[-1]["usageMetadata"]
    (row,) = gateway.query("SELECT protocol, input_tokens, output_tokens, status FROM usage_records "
                           "WHERE request_id = ?", r.headers["request-id"])
    assert row == ("gemini", usage["promptTokenCount"],
                   usage["candidatesTokenCount"] + usage.get("thoughtsTokenCount", 0), "succeeded")


def test_a_whole_native_answer_comes_back_unchanged(gateway: Gateway, fake: FakeUpstream, acct: dict) -> None:
    answer = {"candidates": [{"content": {"role": "model", "parts": [{"text": "bonjour"}]}, "finishReason": "STOP"}],
              "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
              "modelVersion": "gemini-3.1-pro-preview", "responseId": "abc"}
    raw = json.dumps(answer, indent=2).encode()
    fake.queue(Answer(body=raw))
    r = post(gateway, "/v1beta/models/gemini-2.5-pro:generateContent", acct["key"], HI)
    assert r.status_code == 200 and r.content == raw
    assert fake.received[0].path == UPSTREAM + "generateContent"


def test_without_alt_sse_the_native_stream_is_geminis_json_array_relayed_as_is(
        gateway: Gateway, fake: FakeUpstream, acct: dict) -> None:
    _, _, raw = interactions()[0]
    array = b"[" + b"\r\n,".join(json.dumps(c, indent=2).encode() for c in chunks_of(raw)) + b"]"
    fake.queue(sse_answer(array.decode(), chunk_size=50))
    r, got = stream(gateway, "/v1beta/models/gemini-3-1-pro:streamGenerateContent", acct["key"], HI)
    assert r.status_code == 200 and got == array
    assert fake.received[0].query == ""


def test_max_output_tokens_is_lowered_in_the_native_body_when_the_wallet_is_short(
        gateway: Gateway, fake: FakeUpstream) -> None:
    poor = gateway.account(usd="0.05")
    body = {**HI, "generationConfig": {"maxOutputTokens": 60000, "temperature": 0.3}}
    r = post(gateway, "/v1beta/models/gemini-3-1-pro:generateContent", poor["key"], body)
    assert r.status_code == 200, r.text
    lowered = int(r.headers["bytespike-max-tokens-lowered"])
    sent = fake.received[0].json()
    assert sent["generationConfig"] == {"maxOutputTokens": lowered, "temperature": 0.3} and lowered < 60000
    assert set(sent) == {"contents", "generationConfig"}  # nothing of the gateway's own view goes up


# ---------------------------------------------------------------- translated streams on the wire


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gpt-5-5"])
def test_translated_streams_frame_as_sse_or_as_one_json_array(gateway: Gateway, fake: FakeUpstream, acct: dict,
                                                              model: str) -> None:
    r, sse = stream(gateway, f"/v1beta/models/{model}:streamGenerateContent?alt=sse", acct["key"], HI)
    assert r.status_code == 200 and sse.startswith(b"data: {") and sse.endswith(b"\r\n\r\n")
    chunks = chunks_of(sse)
    r, array = stream(gateway, f"/v1beta/models/{model}:streamGenerateContent", acct["key"], HI)
    parsed = orjson.loads(array)
    for got in (chunks, parsed):
        text = "".join(p.get("text", "") for c in got for p in c["candidates"][0]["content"].get("parts", []))
        assert "simulated" in text
        assert got[-1]["candidates"][0]["finishReason"] == "STOP"
        assert got[-1]["usageMetadata"]["promptTokenCount"] > 0 and got[-1]["modelVersion"] == model


# ---------------------------------------------------------------- errors in Gemini's shape


def test_requests_the_gateway_refuses_get_geminis_error_shape(gateway: Gateway, fake: FakeUpstream,
                                                              acct: dict) -> None:
    path = "/v1beta/models/gemini-3-1-pro:generateContent"
    assert "x-goog-api-key" in assert_gemini_error(post(gateway, path, None, HI), 401, "UNAUTHENTICATED")
    assert_gemini_error(post(gateway, path, "sk-byts-wrong", HI), 401, "UNAUTHENTICATED")
    assert_gemini_error(post(gateway, "/v1beta/models/no-such-model:generateContent", acct["key"], HI), 404,
                        "NOT_FOUND")
    assert_gemini_error(post(gateway, "/v1beta/models/gemini-3-1-pro:embedContent", acct["key"], HI), 404,
                        "NOT_FOUND")
    assert_gemini_error(post(gateway, path, acct["key"], content=b"{nope"), 400, "INVALID_ARGUMENT")
    msg = assert_gemini_error(post(gateway, "/v1beta/models/claude-sonnet-4-6:generateContent", acct["key"],
                                   {"contents": []}), 400, "INVALID_ARGUMENT")
    assert "contents" in msg
    claude_only = gateway.account(group="claude-default")
    assert_gemini_error(post(gateway, path, claude_only["key"], HI), 403, "PERMISSION_DENIED")
    broke = gateway.account(usd="0")
    assert_gemini_error(post(gateway, path, broke["key"], HI), 402, "FAILED_PRECONDITION")
    r = httpx.get(gateway.url + path, headers={"x-goog-api-key": acct["key"]})
    assert_gemini_error(r, 405, "UNIMPLEMENTED")
    assert fake.received == []


@pytest.mark.parametrize("model", ["gemini-3-1-pro", "claude-sonnet-4-6"])
def test_upstream_429_and_500_reach_the_client_in_geminis_shape_and_are_not_billed(
        gateway: Gateway, fake: FakeUpstream, model: str) -> None:
    a = gateway.account()
    path = f"/v1beta/models/{model}:generateContent"
    fake.queue(json_answer({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}},
                           status=429, headers={"retry-after": "7"}))
    r = post(gateway, path, a["key"], HI)
    assert_gemini_error(r, 429, "RESOURCE_EXHAUSTED", fake)
    assert r.headers["retry-after"] == "7"
    fake.queue(json_answer({"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}, status=500))
    r2 = post(gateway, path, a["key"], HI)
    assert_gemini_error(r2, 500, "INTERNAL", fake)
    gateway.wait_settled([r.headers["request-id"], r2.headers["request-id"]])
    rows = gateway.query("SELECT status, cost FROM usage_records WHERE account_id = ?", a["account_id"])
    assert rows == [("failed", 0), ("failed", 0)]


CLAUDE_START = ('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
                '"role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,'
                '"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
                'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                '"content_block":{"type":"text","text":""}}\n\n'
                'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                '"delta":{"type":"text_delta","text":"Hel"}}\n\n')


@pytest.mark.parametrize("model,first", [
    ("gemini-3-1-pro", 'data: {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}}]}\r\n\r\n'),
    ("claude-sonnet-4-6", CLAUDE_START),
])
@pytest.mark.parametrize("sse", [True, False])
def test_a_stream_cut_mid_way_ends_with_geminis_error_and_is_not_billed(
        gateway: Gateway, fake: FakeUpstream, model: str, first: str, sse: bool) -> None:
    a = gateway.account()
    if not sse and model.startswith("gemini"):
        first = "[" + first.removeprefix("data: ").strip()
    fake.queue(sse_answer(first + "x", chunk_size=len(first), cut_after=1))
    r, raw = stream(gateway, f"/v1beta/models/{model}:streamGenerateContent" + ("?alt=sse" if sse else ""),
                    a["key"], HI)
    assert r.status_code == 200
    items = chunks_of(raw) if sse else orjson.loads(raw)
    assert "Hel" in json.dumps(items[0])
    err = items[-1]["error"]
    assert err["status"] == "INTERNAL" and err["code"] == 500 and err["message"]
    gateway.wait_settled([r.headers["request-id"]])
    assert gateway.query("SELECT status, cost FROM usage_records WHERE request_id = ?",
                         r.headers["request-id"]) == [("failed", 0)]


def test_gemini_traffic_is_counted_in_the_metrics_under_its_protocol(gateway: Gateway, fake: FakeUpstream,
                                                                      acct: dict) -> None:
    assert post(gateway, "/v1beta/models/gpt-5-5:generateContent", acct["key"], HI).status_code == 200
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'protocol="gemini"' in metrics


def test_a_full_window_refuses_in_geminis_shape_with_retry_after(gateway: Gateway, fake: FakeUpstream) -> None:
    a = gateway.account(limits=["1d:requests=1"])
    path = "/v1beta/models/gemini-3-1-pro:generateContent"
    assert post(gateway, path, a["key"], HI).status_code == 200
    r = post(gateway, path, a["key"], HI)
    assert_gemini_error(r, 429, "RESOURCE_EXHAUSTED")
    assert int(r.headers["retry-after"]) > 0
    assert len(fake.received) == 1


@pytest.fixture(scope="module")
def failover_gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from conftest import DEAD_PROVIDER, test_config

    d = tmp_path_factory.mktemp("gw-gemini-failover")
    model = {"gemini-failover": {"price": {"input": 2, "output": 12}, "deployments": [
        {"provider": "dead", "model": "claude-unreachable", "priority": 0},
        {"provider": "gemini", "model": "gemini-3.1-pro-preview", "priority": 1}]}}
    gw = Gateway(d, test_config(fake.url, d / "bytespike.db", extra_models=model,
                                extra_providers=DEAD_PROVIDER)).start()
    yield gw
    gw.stop()


def test_a_failing_deployment_fails_over_to_the_next_one(failover_gateway: Gateway, fake: FakeUpstream) -> None:
    a = failover_gateway.account()
    r, raw = stream(failover_gateway, "/v1beta/models/gemini-failover:streamGenerateContent?alt=sse", a["key"], HI)
    assert r.status_code == 200 and "simulated" in raw.decode()
    assert [x.path for x in fake.received] == [UPSTREAM + "streamGenerateContent"]
    failover_gateway.wait_settled([r.headers["request-id"]])
    assert failover_gateway.query("SELECT provider, status FROM usage_records WHERE request_id = ?",
                                  r.headers["request-id"]) == [("gemini", "succeeded")]
