"""Requests built to make the gateway and a greedy upstream disagree: every client-input check is
made before the upstream is opened, and what the upstream reads is what the gateway decided.

The hypothesis fuzzers send mutated requests on each inbound protocol to a running gateway and
check that none gets a 500 and that none refused as invalid reached the upstream.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Gateway
from fakeupstream import FakeUpstream
from greedy import Greedy

V = {"anthropic-version": "2023-06-01"}


def messages(gw: Gateway, key: str, body: bytes | dict[str, Any]) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(gw.url + "/v1/messages", content=content, timeout=30,
                      headers={**V, "x-api-key": key, "content-type": "application/json"})


def chat(gw: Gateway, key: str, body: bytes | dict[str, Any]) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(gw.url + "/v1/chat/completions", content=content, timeout=30,
                      headers={"authorization": f"Bearer {key}", "content-type": "application/json"})


def refused_before_upstream(fake: FakeUpstream, r: httpx.Response, before: int, field: str | None = None) -> None:
    assert r.status_code == 400, r.text
    assert len(fake.received) == before, "an invalid request reached the upstream"
    if field is not None:
        assert field in r.text, r.text


# ---------------------------------------------------------------- money fields


@pytest.mark.parametrize("model", ["gpt-5-5-chat", "claude-haiku-4-5", "gemini-3-1-pro"])
def test_openai_n_above_one_is_refused_before_the_upstream(gateway: Gateway, fake: FakeUpstream, model: str) -> None:
    fake.handler = Greedy()
    acct = gateway.account(usd="0.05")
    before = len(fake.received)
    r = chat(gateway, acct["key"], {"model": model, "n": 20, "max_tokens": 1000,
                                    "messages": [{"role": "user", "content": "x"}]})
    refused_before_upstream(fake, r, before, "n")


@pytest.mark.parametrize("model", ["gpt-5-5-chat", "claude-haiku-4-5"])
def test_disagreeing_max_tokens_and_max_completion_tokens_are_refused(gateway: Gateway, fake: FakeUpstream,
                                                                     model: str) -> None:
    fake.handler = greedy = Greedy()
    acct = gateway.account(usd="0.05")
    before = len(fake.received)
    r = chat(gateway, acct["key"], {"model": model, "max_completion_tokens": 1, "max_tokens": 8192,
                                    "messages": [{"role": "user", "content": "x"}]})
    refused_before_upstream(fake, r, before, "max_completion_tokens")
    ok = chat(gateway, acct["key"], {"model": model, "max_completion_tokens": 300, "max_tokens": 300,
                                     "messages": [{"role": "user", "content": "x"}]})
    assert ok.status_code == 200, ok.text
    assert greedy.served[-1].output_tokens == 300


def test_duplicate_keys_on_a_route_that_forwards_the_body_as_sent_are_refused(gateway: Gateway,
                                                                              fake: FakeUpstream) -> None:
    fake.handler = Greedy()
    acct = gateway.account(usd="5")
    body = (b'{"model":"claude-opus-4-8","max_tokens":100,"messages":[{"role":"user","content":"x"}],'
            b'"model":"claude-haiku-4-5"}')
    before = len(fake.received)
    refused_before_upstream(fake, messages(gateway, acct["key"], body), before, "model")
    nested = (b'{"model":"gpt-5-5-chat","max_tokens":100,"messages":[{"role":"user","content":"x","role":"system"}]}')
    refused_before_upstream(fake, chat(gateway, acct["key"], nested), before, "role")


def test_duplicate_keys_on_a_translated_route_reach_the_upstream_as_the_gateway_read_them(
        gateway: Gateway, fake: FakeUpstream) -> None:
    fake.handler = greedy = Greedy()
    acct = gateway.account(usd="5")
    body = (b'{"model":"gpt-5-5-chat","max_tokens":100,"messages":[{"role":"user","content":"x"}],'
            b'"model":"gemini-3-1-pro","max_tokens":7}')
    r = messages(gateway, acct["key"], body)
    assert r.status_code == 200, r.text
    (served,) = greedy.served
    assert ":generateContent" in served.path and served.output_tokens == 7
    gateway.wait_settled([r.headers["request-id"]])
    rec = gateway.query("SELECT model_used, output_tokens FROM usage_records WHERE request_id = ?",
                        r.headers["request-id"])
    assert rec == [("gemini-3-1-pro", 7)]


# ---------------------------------------------------------------- malformed fields


MESSAGES_CASES = [
    ("messages", {"messages": [5]}),
    ("system", {"system": 5}),
    ("tools", {"tools": "x"}),
    ("stop_sequences", {"stop_sequences": 5}),
    ("messages.0.content", {"messages": [{"role": "user", "content": 5}]}),
    ("messages.0.role", {"messages": [{"role": 5, "content": "x"}]}),
    ("tool_choice", {"tool_choice": "auto"}),
    ("thinking", {"thinking": 5}),
    ("temperature", {"temperature": "hot"}),
]
CHAT_CASES = [
    ("stream_options", {"stream": True, "stream_options": 5}),
    ("messages", {"messages": [5]}),
    ("tools", {"tools": "x"}),
    ("stop", {"stop": 5}),
    ("messages.0.content", {"messages": [{"role": "user", "content": 5}]}),
    ("response_format", {"response_format": "json"}),
]


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gpt-5-5-chat", "gemini-3-1-pro"])
@pytest.mark.parametrize(("field", "change"), MESSAGES_CASES, ids=[c[0] for c in MESSAGES_CASES])
def test_a_malformed_messages_field_is_a_400_naming_it_before_the_upstream(
        gateway: Gateway, fake: FakeUpstream, acct: dict[str, Any], model: str, field: str,
        change: dict[str, Any]) -> None:
    body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "x"}], **change}
    before = len(fake.received)
    refused_before_upstream(fake, messages(gateway, acct["key"], body), before, field)


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gpt-5-5-chat", "gemini-3-1-pro"])
@pytest.mark.parametrize(("field", "change"), CHAT_CASES, ids=[c[0] for c in CHAT_CASES])
def test_a_malformed_chat_field_is_a_400_naming_it_before_the_upstream(
        gateway: Gateway, fake: FakeUpstream, acct: dict[str, Any], model: str, field: str,
        change: dict[str, Any]) -> None:
    body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "x"}], **change}
    before = len(fake.received)
    refused_before_upstream(fake, chat(gateway, acct["key"], body), before, field)


# ---------------------------------------------------------------- fuzzers

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)

MESSAGES_FIELDS = ["model", "max_tokens", "messages", "system", "tools", "tool_choice", "stop_sequences", "stream",
                   "thinking", "metadata", "temperature", "top_p", "top_k", "mcp_servers", "service_tier"]
CHAT_FIELDS = ["model", "max_tokens", "max_completion_tokens", "messages", "tools", "tool_choice", "stop", "stream",
               "stream_options", "n", "response_format", "temperature", "user", "reasoning_effort", "seed",
               "parallel_tool_calls", "modalities", "audio", "function_call", "top_k", "safety_identifier",
               "service_tier", "metadata"]


_message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", 5]),
                                  "content": _json | st.lists(st.fixed_dictionaries(
                                      {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", 5]),
                                       "text": _json}), max_size=2)})


def _mutations(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    fields_changed = st.dictionaries(st.sampled_from(fields), _json, min_size=1, max_size=3)
    messages_changed = st.fixed_dictionaries({"messages": st.lists(_message, min_size=1, max_size=3)})
    return fields_changed | messages_changed


def _fuzz(gw: Gateway, fake: FakeUpstream, key: str, send: Any, base: dict[str, Any], change: dict[str, Any],
          stream: bool) -> None:
    body = {**base, "stream": stream, **change}
    before = len(fake.received)
    r = send(gw, key, body)
    assert r.status_code != 500, (body, r.text)
    assert b"Traceback" not in r.content
    if 400 <= r.status_code < 500 and r.status_code not in (402, 429):
        assert len(fake.received) == before, (body, r.text)


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gpt-5-5-chat", "gemini-3-1-pro"])
def test_fuzzed_messages_requests_never_get_a_500_and_invalid_ones_never_reach_the_upstream(
        gateway: Gateway, fake: FakeUpstream, model: str) -> None:
    fake.handler = Greedy()
    acct = gateway.account(usd="100")
    base = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]}

    @FUZZ
    @given(change=_mutations(MESSAGES_FIELDS), stream=st.booleans())
    def run(change: dict[str, Any], stream: bool) -> None:
        _fuzz(gateway, fake, acct["key"], messages, {**base, "model": model}, change, stream)

    run()
    assert "Traceback" not in gateway.log.read_text()


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gpt-5-5-chat", "gemini-3-1-pro"])
def test_fuzzed_chat_requests_never_get_a_500_and_invalid_ones_never_reach_the_upstream(
        gateway: Gateway, fake: FakeUpstream, model: str) -> None:
    fake.handler = Greedy()
    acct = gateway.account(usd="100")
    base = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]}

    @FUZZ
    @given(change=_mutations(CHAT_FIELDS), stream=st.booleans())
    def run(change: dict[str, Any], stream: bool) -> None:
        _fuzz(gateway, fake, acct["key"], chat, base, change, stream)

    run()
    assert "Traceback" not in gateway.log.read_text()
