"""Every error a client can meet on /v1/messages: right status, Anthropic shape, nothing leaked."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from conftest import Gateway
from fakeupstream import Answer, FakeUpstream, json_answer, sse_answer

V = {"anthropic-version": "2023-06-01"}
HELLO = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def post(gw: Gateway, key: str | None, body=None, content: bytes | None = None, headers=None):  # type: ignore[no-untyped-def]
    h = {**V, **(headers or {})}
    if key:
        h["x-api-key"] = key
    return httpx.post(gw.url + "/v1/messages", json=body if content is None else None, content=content, headers=h,
                      timeout=30)


def assert_error(r: httpx.Response, status: int, type_: str, fake: FakeUpstream | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == type_
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert r.headers["request-id"].startswith("req_")
    text = r.text
    assert "upstream-secret" not in text
    assert "Traceback" not in text
    if fake is not None:
        assert str(fake.port) not in text
    return body


def test_bad_json_is_400(gateway: Gateway, acct):
    assert_error(post(gateway, acct["key"], content=b"{not json"), 400, "invalid_request_error")


def test_missing_field_is_400_naming_it(gateway: Gateway, acct):
    body = assert_error(post(gateway, acct["key"], {"model": "claude-haiku-4-5", "messages": []}), 400,
                        "invalid_request_error")
    assert "max_tokens" in body["error"]["message"]


def test_no_key_is_401(gateway: Gateway):
    assert_error(post(gateway, None, HELLO), 401, "authentication_error")


def test_unknown_key_is_401(gateway: Gateway):
    assert_error(post(gateway, "sk-byts-" + "A" * 43, HELLO), 401, "authentication_error")
    assert_error(post(gateway, None, HELLO, headers={"authorization": "Bearer sk-nope"}), 401, "authentication_error")


def test_bearer_key_is_accepted(gateway: Gateway, acct):
    r = post(gateway, None, HELLO, headers={"authorization": f"Bearer {acct['key']}"})
    assert r.status_code == 200


def test_revoked_key_is_401_at_once(gateway: Gateway, acct):
    assert post(gateway, acct["key"], HELLO).status_code == 200
    gateway.cli("keys", "revoke", acct["key_id"])
    body = assert_error(post(gateway, acct["key"], HELLO), 401, "authentication_error")
    assert "revoked" in body["error"]["message"]


def test_unknown_model_is_404(gateway: Gateway, acct):
    assert_error(post(gateway, acct["key"], {**HELLO, "model": "claude-nonexistent-9"}), 404, "not_found_error")


def test_model_outside_the_keys_group_is_403(gateway: Gateway):
    a = gateway.account(group="claude-default")
    assert_error(post(gateway, a["key"], {**HELLO, "model": "gpt-5-5"}), 403, "permission_error")
    assert post(gateway, a["key"], HELLO).status_code == 200


@pytest.mark.parametrize("status,type_", [(429, "rate_limit_error"), (529, "overloaded_error"), (500, "api_error")])
def test_upstream_failure_status_is_mapped(gateway: Gateway, fake: FakeUpstream, acct, status, type_):
    err = {"type": "error", "error": {"type": type_, "message": "upstream says no"}}
    fake.queue(json_answer(err, status=status, headers={"retry-after": "7"}))
    r = post(gateway, acct["key"], HELLO)
    assert_error(r, status, type_, fake)
    if status == 429:
        assert r.headers["retry-after"] == "7"


def test_upstream_auth_failure_does_not_look_like_the_clients_key(gateway: Gateway, fake: FakeUpstream, acct):
    fake.queue(json_answer({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
                           status=401))
    body = assert_error(post(gateway, acct["key"], HELLO), 500, "api_error", fake)
    assert "x-api-key" not in body["error"]["message"]


def test_upstream_unreachable_is_529(gateway: Gateway, acct):
    body = assert_error(post(gateway, acct["key"], {**HELLO, "model": "claude-unreachable"}), 529, "overloaded_error")
    assert "127.0.0.1" not in body["error"]["message"]


def test_upstream_400_message_reaches_the_client(gateway: Gateway, fake: FakeUpstream, acct):
    msg = "messages.1: tool_use ids were found without tool_result blocks immediately after: call_1."
    fake.queue(json_answer({"type": "error", "error": {"type": "invalid_request_error", "message": msg}}, status=400))
    body = assert_error(post(gateway, acct["key"], HELLO), 400, "invalid_request_error", fake)
    assert body["error"]["message"] == msg


def test_stream_cut_midway_ends_with_an_sse_error_event(gateway: Gateway, fake: FakeUpstream, acct):
    start = ('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
             '"role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,'
             '"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
             'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
             '"content_block":{"type":"text","text":""}}\n\n'
             'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
             '"delta":{"type":"text_delta","text":"Hel"}}\n\n')
    fake.queue(sse_answer(start + "event: content_block_delta\ndata: {}\n\n", chunk_size=len(start), cut_after=1))
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]},
                      json={**HELLO, "stream": True}) as r:
        raw = b"".join(r.iter_raw()).decode()
    assert r.status_code == 200
    assert raw.startswith(start)
    tail = raw[len(start):]
    assert "event: error" in tail and "message_stop" not in tail
    fake.queue(sse_answer(start, chunk_size=len(start), cut_after=1))
    c = anthropic.Anthropic(base_url=gateway.url, api_key=acct["key"], max_retries=0)
    with pytest.raises(anthropic.APIStatusError):
        with c.messages.stream(**HELLO) as s:
            for _ in s:
                pass


def test_upstream_stream_that_stops_without_message_stop_gets_an_error_event(gateway: Gateway, fake: FakeUpstream,
                                                                             acct):
    body = ('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
            '"role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,'
            '"usage":{"input_tokens":5,"output_tokens":1}}}\n\n')
    fake.queue(sse_answer(body))
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]},
                      json={**HELLO, "stream": True}) as r:
        raw = b"".join(r.iter_raw()).decode()
    assert raw.startswith(body)
    assert "event: error" in raw[len(body):]


def test_batches_point_to_tasks(gateway: Gateway, acct):
    r = httpx.post(gateway.url + "/v1/messages/batches", headers={**V, "x-api-key": acct["key"]}, json={})
    body = assert_error(r, 404, "not_found_error")
    assert "POST /v1/tasks" in body["error"]["message"]
    r = httpx.get(gateway.url + "/v1/messages/batches/msgbatch_1", headers={**V, "x-api-key": acct["key"]})
    assert_error(r, 404, "not_found_error")


def test_body_over_the_limit_is_413(gateway: Gateway, acct):
    big = {**HELLO, "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    assert_error(post(gateway, acct["key"], big), 413, "request_too_large")


def test_unknown_route_is_404_in_anthropic_shape(gateway: Gateway):
    r = httpx.get(gateway.url + "/v1/nothing-here")
    assert_error(r, 404, "not_found_error")


def test_health_and_readiness(gateway: Gateway):
    assert httpx.get(gateway.url + "/healthz").json()["status"] == "ok"
    r = httpx.get(gateway.url + "/readyz")
    assert r.status_code == 200 and r.json()["database"] == "ok"


def test_refusal_answer_kept(gateway: Gateway, fake: FakeUpstream, acct):
    fake.queue(Answer(status=200, body=b'{"id":"msg_x","type":"message","role":"assistant","model":"claude-haiku-4-5",'
                      b'"content":[],"stop_reason":"refusal","stop_sequence":null,'
                      b'"usage":{"input_tokens":3,"output_tokens":0}}'))
    r = post(gateway, acct["key"], HELLO)
    assert r.json()["stop_reason"] == "refusal"


def test_wrong_method_is_405_in_the_callers_shape(gateway: Gateway, acct):
    r = httpx.get(gateway.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]})
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {acct['key']}"})
    assert r.status_code == 405 and "POST" in r.json()["error"]["message"]
    r = httpx.post(gateway.url + "/v1/models", headers={**V, "x-api-key": acct["key"]})
    assert r.status_code == 405 and r.headers["allow"] == "GET"
