"""The native Anthropic route: what clients get is what the upstream sent, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
import orjson
import pytest

from conftest import RECORDED, Gateway
from fakeupstream import FakeUpstream, json_answer, sse_answer

SDK_FIXTURES = RECORDED / "anthropics__anthropic-sdk-python" / "tests" / "lib" / "streaming" / "fixtures"
OPENCODE_ANTHROPIC = (RECORDED / "anomalyco__opencode" / "packages" / "llm" / "test" / "fixtures" / "recordings"
                      / "anthropic-messages")
CLAUDE_CODE = Path(__file__).parent / "data" / "claude_code"


def recorded_anthropic_streams() -> list[tuple[str, str]]:
    out = []
    for p in sorted(SDK_FIXTURES.glob("*.txt")):
        out.append((p.name, p.read_text()))
    for p in sorted(OPENCODE_ANTHROPIC.glob("*.json")):
        for i, inter in enumerate(json.loads(p.read_text())["interactions"]):
            if inter["response"]["status"] == 200 and "event-stream" in inter["response"]["headers"].get(
                    "content-type", ""):
                out.append((f"{p.stem}#{i}", inter["response"]["body"]))
    return out


def client(gw: Gateway, key: str, **kw) -> anthropic.Anthropic:  # type: ignore[no-untyped-def]
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, **kw)


@pytest.mark.parametrize("name,body", recorded_anthropic_streams(), ids=lambda v: v if isinstance(v, str) and
                         len(v) < 80 else None)
def test_recorded_stream_reaches_client_byte_for_byte(gateway: Gateway, fake: FakeUpstream, acct, name, body):
    fake.queue(sse_answer(body, chunk_size=97))
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={
        "x-api-key": acct["key"], "anthropic-version": "2023-06-01"}, json={
        "model": "claude-haiku-4-5", "max_tokens": 64, "stream": True,
        "messages": [{"role": "user", "content": "hi"}]}) as r:
        raw = b"".join(r.iter_raw())
        assert r.status_code == 200
        assert r.headers["request-id"].startswith("req_")
    assert raw == body.encode()


def test_sdk_stream_gives_the_recorded_message(gateway: Gateway, fake: FakeUpstream, acct):
    body = (SDK_FIXTURES / "tool_use_response.txt").read_text()
    fake.queue(sse_answer(body, chunk_size=13))
    with client(gateway, acct["key"]).messages.stream(
            model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "weather?"}]) as s:
        final = s.get_final_message()
    kinds = [b.type for b in final.content]
    assert kinds == ["text", "tool_use"]
    assert final.stop_reason == "tool_use"
    assert final.content[1].input == json.loads(_tool_input(body))


def _tool_input(body: str) -> str:
    parts = []
    for line in body.splitlines():
        if line.startswith("data:") and "input_json_delta" in line:
            parts.append(json.loads(line[5:])["delta"]["partial_json"])
    return "".join(parts)


def test_sdk_non_stream_gets_the_upstream_body_unchanged(gateway: Gateway, fake: FakeUpstream, acct):
    upstream = {"id": "msg_01XYZ", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": "Hello there", "citations": None}], "stop_reason": "end_turn",
                "stop_sequence": None, "stop_details": None, "some_future_field": {"x": 1},
                "usage": {"input_tokens": 12, "output_tokens": 3, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "service_tier": "standard"}}
    raw = orjson.dumps(upstream, option=orjson.OPT_INDENT_2)
    fake.queue(json_answer(None, body=raw) if False else _raw_json(raw))
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": acct["key"], "anthropic-version": "2023-06-01"},
                   json={"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    assert r.content == raw
    msg = client(gateway, acct["key"]).messages.create(model="claude-haiku-4-5", max_tokens=10,
                                                       messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].type == "text"


def _raw_json(raw: bytes):  # type: ignore[no-untyped-def]
    from fakeupstream import Answer

    return Answer(body=raw)


def test_body_and_headers_reach_upstream_unchanged_except_model(gateway: Gateway, fake: FakeUpstream, acct):
    sent = {"model": "claude-sonnet-4-6", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}],
            "unknown_future_field": {"keep": [1, 2.5, "x"]}, "metadata": {"user_id": "u-1"}}
    raw = json.dumps(sent, indent=1).encode()  # odd formatting must survive too
    httpx.post(gateway.url + "/v1/messages?beta=true", content=raw, headers={
        "x-api-key": acct["key"], "anthropic-version": "2023-06-01", "anthropic-beta": "a-1,b-2",
        "content-type": "application/json"})
    got = fake.requests_to("/anthropic/v1/messages")[-1]
    assert got.body == raw
    assert got.query == "beta=true"
    assert got.headers["anthropic-version"] == "2023-06-01"
    assert got.headers["anthropic-beta"] == "a-1,b-2"
    assert got.headers["x-api-key"] == "upstream-secret-anthropic"
    assert acct["key"] not in json.dumps(got.headers)


@pytest.mark.parametrize("capture", sorted(p.name for p in CLAUDE_CODE.glob("*.messages.json")))
def test_claude_code_request_reaches_upstream_unchanged_except_model(gateway: Gateway, fake: FakeUpstream, acct,
                                                                     capture):
    cap = json.loads((CLAUDE_CODE / capture).read_text())
    body = cap["body"]
    model = body["model"]
    resolved_model = {"claude-opus-5-5": None}.get(model, model)
    if resolved_model is None or not _served(gateway, acct, model):
        body = {**body, "model": "claude-sonnet-4-6"}
    headers = {k: v for k, v in cap["headers"].items()
               if k not in ("host", "content-length", "connection", "accept-encoding", "x-api-key")}
    headers["x-api-key"] = acct["key"]
    path = cap["path"]
    r = httpx.post(gateway.url + path, content=orjson.dumps(body), headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    got = fake.requests_to("/anthropic/v1/messages")[-1]
    up = got.json()
    assert up == body  # served by a deployment with the same model name: nothing changes
    for name, value in headers.items():
        if name.startswith("anthropic-"):
            assert got.headers[name] == value


def _served(gw: Gateway, acct, model: str) -> bool:  # type: ignore[no-untyped-def]
    r = httpx.get(gw.url + f"/v1/models/{model}", headers={"x-api-key": acct["key"], "anthropic-version": "2023-06-01"})
    return r.status_code == 200


def test_alias_is_served_by_current_model_and_named_as_asked(gateway: Gateway, fake: FakeUpstream, acct):
    c = client(gateway, acct["key"])
    msg = c.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=20,
                            messages=[{"role": "user", "content": "hi"}])
    assert msg.model == "claude-3-5-sonnet-20241022"
    assert fake.requests_to("/anthropic/v1/messages")[-1].json()["model"] == "claude-sonnet-4-6"
    with c.messages.stream(model="claude-3-7-sonnet-20250219", max_tokens=20,
                           messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_message()
    assert final.model == "claude-3-7-sonnet-20250219"
    assert fake.requests_to("/anthropic/v1/messages")[-1].json()["model"] == "claude-sonnet-4-6"


def test_count_tokens_is_forwarded_to_anthropic(gateway: Gateway, fake: FakeUpstream, acct):
    fake.queue(json_answer({"input_tokens": 4242}))
    n = client(gateway, acct["key"]).messages.count_tokens(
        model="claude-3-5-haiku-20241022", messages=[{"role": "user", "content": "hi"}])
    assert n.input_tokens == 4242
    got = fake.requests_to("/anthropic/v1/messages/count_tokens")[-1]
    assert got.json()["model"] == "claude-haiku-4-5"
