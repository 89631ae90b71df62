"""What Claude Code expects of a gateway beyond the relay: every model id it sends resolves,
discovery lists cross-vendor models under ids it keeps, errors say whether to retry, context
overflow reads as Anthropic's, silent translated streams carry pings, probes and managed settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from conftest import Gateway
from conftest import test_config as gateway_config
from fakeupstream import FakeUpstream, json_answer, sse_answer

V = {"anthropic-version": "2023-06-01"}
HELLO = {"max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def client(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


@pytest.mark.parametrize(("asked", "served_by"), [
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("claude-opus-4-7", "claude-opus-4-8"),
    ("claude-sonnet-5", "claude-sonnet-4-6"),
    ("claude-opus-5-5", "claude-opus-4-8"),
    ("claude-fable-5", "claude-fable-5"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-6"),
])
def test_claude_code_model_ids_are_served_by_their_family(gateway: Gateway, fake: FakeUpstream, acct: dict,
                                                           asked: str, served_by: str) -> None:
    msg = client(gateway, acct["key"]).messages.create(model=asked, **HELLO)
    assert msg.model == asked
    upstream = fake.requests_to("/anthropic/v1/messages")[-1].json()
    assert upstream["model"] == served_by
    rid = msg._request_id
    gateway.wait_settled([rid])
    (model_used, cost), = gateway.query("SELECT model_used, cost FROM usage_records WHERE request_id = ?", rid)
    assert model_used == served_by and cost > 0


def test_an_unknown_claude_family_is_still_a_clear_404(gateway: Gateway, acct: dict) -> None:
    r = httpx.post(gateway.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]},
                   json={**HELLO, "model": "claude-nonexistent-9"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert r.headers["x-should-retry"] == "false"


def test_discovery_lists_cross_vendor_models_under_claude_ids(gateway: Gateway, acct: dict) -> None:
    r = httpx.get(gateway.url + "/v1/models", params={"limit": 1000}, headers={**V, "x-api-key": acct["key"]})
    assert r.status_code == 200
    by_id = {m["id"]: m for m in r.json()["data"]}
    via = by_id["claude-via-gpt-5-5"]
    assert via["served_by"] == "gpt-5-5" and via["display_name"] and via["description"]
    for word in ("opus", "sonnet", "haiku"):
        assert not any(word in i for i in by_id if i.startswith("claude-via-"))
    assert by_id["claude-sonnet-4-6"]["description"]
    assert "claude-via-claude-sonnet-4-6" not in by_id


def test_discovery_alias_is_answered_by_the_cross_vendor_route(gateway: Gateway, fake: FakeUpstream,
                                                                acct: dict) -> None:
    msg = client(gateway, acct["key"]).messages.create(model="claude-via-gpt-5-5", **HELLO)
    assert msg.model == "claude-via-gpt-5-5"
    assert fake.requests_to("/openai-responses/responses")[-1].json()["model"] == "gpt-5.5"


def test_a_claude_only_key_does_not_see_or_reach_other_vendors(gateway: Gateway) -> None:
    acct = gateway.account(group="claude-default")
    ids = [m["id"] for m in httpx.get(gateway.url + "/v1/models", headers={**V, "x-api-key": acct["key"]}).json()["data"]]
    assert "claude-via-gpt-5-5" not in ids and "claude-sonnet-4-6" in ids
    r = httpx.post(gateway.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]},
                   json={**HELLO, "model": "claude-via-gpt-5-5"})
    assert r.status_code == 403 and r.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404])
def test_errors_a_retry_cannot_fix_say_so(gateway: Gateway, status: int) -> None:
    acct = gateway.account(usd="0" if status == 402 else "10", group="claude-default")
    body: dict[str, Any] = {**HELLO, "model": "claude-haiku-4-5"}
    headers = {**V, "x-api-key": acct["key"]}
    if status == 400:
        body.pop("max_tokens")
    elif status == 401:
        headers["x-api-key"] = "sk-byts-" + "x" * 40
    elif status == 403:
        body["model"] = "gpt-5-5"
    elif status == 404:
        body["model"] = "gpt-nothing"
    r = httpx.post(gateway.url + "/v1/messages", headers=headers, json=body)
    assert r.status_code == status
    assert r.headers["x-should-retry"] == "false"


def test_upstream_overload_says_retry(gateway: Gateway, fake: FakeUpstream, acct: dict) -> None:
    fake.queue(json_answer({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, status=529))
    r = httpx.post(gateway.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]},
                   json={**HELLO, "model": "claude-haiku-4-5"})
    assert r.status_code == 529 and r.headers["x-should-retry"] == "true"


@pytest.mark.parametrize(("model", "error"), [
    ("gpt-5-5", {"error": {"message": "This model's maximum context length is 128000 tokens. However, your "
                                      "messages resulted in 131072 tokens.", "type": "invalid_request_error",
                           "param": "messages", "code": "context_length_exceeded"}}),
    ("gemini-3-1-pro", {"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum "
                                                          "number of tokens allowed (1048576).",
                                  "status": "INVALID_ARGUMENT"}}),
])
def test_context_overflow_reads_as_anthropics_prompt_is_too_long(gateway: Gateway, fake: FakeUpstream, acct: dict,
                                                                  model: str, error: dict) -> None:
    fake.queue(json_answer(error, status=400))
    with pytest.raises(anthropic.BadRequestError) as exc:
        client(gateway, acct["key"]).messages.create(model=model, **HELLO)
    assert exc.value.body["error"]["message"].startswith("prompt is too long: ")
    assert exc.value.body["error"]["type"] == "invalid_request_error"


def _chat_chunks(text: str) -> list[bytes]:
    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
        obj: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5.5",
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            obj["choices"] = []
            obj["usage"] = usage
        return b"data: " + orjson.dumps(obj) + b"\n\n"
    return [chunk({"role": "assistant", "content": ""}), chunk({"content": text}), chunk({}, "stop"),
            chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}), b"data: [DONE]\n\n"]


@pytest.fixture(scope="module")
def quick_ping_gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory):
    d: Path = tmp_path_factory.mktemp("ping")
    cfg = gateway_config(fake.url, d / "bytespike.db")
    cfg["server"] = {"stream_keepalive_seconds": 0.5}
    cfg["claude_code"] = {"managed_settings": {"multi-vendor": {"permissions": {"deny": ["Bash(rm -rf:*)"]}}}}
    gw = Gateway(d, cfg).start()
    yield gw
    gw.stop()


def test_a_silent_translated_stream_carries_pings_and_still_ends_well(quick_ping_gateway: Gateway,
                                                                       fake: FakeUpstream) -> None:
    gw = quick_ping_gateway
    acct = gw.account()
    answer = sse_answer("", delay_between=2.0)
    answer.chunks = _chat_chunks("after the silence")
    fake.queue(answer)
    with httpx.stream("POST", gw.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]},
                      json={**HELLO, "model": "gpt-5-5-chat", "stream": True}, timeout=30) as r:
        raw = b"".join(r.iter_raw()).decode()
    events = [line[len("event: "):] for line in raw.splitlines() if line.startswith("event: ")]
    assert events.count("ping") >= 2
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "after the silence" in raw


def test_probes_answer_without_a_key(gateway: Gateway) -> None:
    for path in ("/", "/api/hello"):
        assert httpx.head(gateway.url + path).status_code == 200
        assert httpx.get(gateway.url + path).status_code == 200


def test_managed_settings_per_group_with_etag(quick_ping_gateway: Gateway) -> None:
    gw = quick_ping_gateway
    acct = gw.account()
    r = httpx.get(gw.url + "/managed/settings", headers={"authorization": f"Bearer {acct['key']}"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["settings"] == {"permissions": {"deny": ["Bash(rm -rf:*)"]}} and doc["uuid"] and doc["checksum"]
    again = httpx.get(gw.url + "/managed/settings", headers={"authorization": f"Bearer {acct['key']}",
                                                             "if-none-match": r.headers["etag"]})
    assert again.status_code == 304
    other = gw.account(group="claude-default")
    assert httpx.get(gw.url + "/managed/settings", headers={"x-api-key": other["key"]}).status_code == 404
    assert httpx.get(gw.url + "/managed/settings").status_code == 401


def test_otlp_telemetry_is_acknowledged(gateway: Gateway, acct: dict) -> None:
    for signal in ("metrics", "logs", "traces"):
        r = httpx.post(gateway.url + f"/v1/{signal}", headers={"x-api-key": acct["key"]},
                       json={"resourceMetrics": []})
        assert r.status_code == 200 and r.json() == {}
        r = httpx.post(gateway.url + f"/v1/{signal}", content=b"\x0a\x00",
                       headers={"content-type": "application/x-protobuf"})
        assert r.status_code == 200


def test_usage_records_name_the_claude_code_session_and_agent(gateway: Gateway, acct: dict) -> None:
    session = "sess-" + "a" * 20
    ids = []
    for agent, parent in (("main", None), ("sub-1", "main")):
        headers = {**V, "x-api-key": acct["key"], "x-claude-code-session-id": session, "x-claude-code-agent-id": agent}
        if parent:
            headers["x-claude-code-parent-agent-id"] = parent
        r = httpx.post(gateway.url + "/v1/messages", headers=headers, json={**HELLO, "model": "claude-haiku-4-5"})
        assert r.status_code == 200
        ids.append(r.headers["request-id"])
    gateway.wait_settled(ids)
    rows = gateway.query("SELECT session_id, agent_id, parent_agent_id FROM usage_records WHERE request_id IN (?, ?)",
                         *ids)
    assert sorted(rows, key=lambda r: r[1]) == [(session, "main", None), (session, "sub-1", "main")]
    out = orjson.loads(gateway.cli("usage", acct["email"], "--json").stdout)
    (sess,) = [s for s in out["sessions"] if s["session_id"] == session]
    assert sess["requests"] == 2 and sess["agents"] == 2 and float(sess["cost_usd"]) > 0
