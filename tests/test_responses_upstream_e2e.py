"""Messages and Chat clients reaching OpenAI's Responses API (gpt-5-5 in the built-in catalogue):
every recorded Responses interaction replayed through the gateway to the real `anthropic` SDK,
reasoning carried between turns, cached and reasoning tokens billed, and OpenAI's parameter rules
applied by model name (also for an `openai` Chat provider configured with no options)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
import yaml

from bytespike.protocols.openai_responses import responses_to_messages_request
from conftest import BUILTIN, Gateway
from fakeupstream import Answer, FakeUpstream, Received
from responses_fake import Rejected, validate
from responses_support import parse_sse, recorded_interactions

RECORDED = recorded_interactions()
ISSUED = frozenset(e["item"]["encrypted_content"] for _, _, raw in RECORDED for e in parse_sse(raw)
                   if e["type"] == "response.output_item.done" and e["item"].get("encrypted_content")) | frozenset(
    i["encrypted_content"] for _, _, raw in RECORDED for i in parse_sse(raw)[-1]["response"]["output"]
    if i.get("encrypted_content"))
IDS = [n for n, _, _ in RECORDED]
PRICES = yaml.safe_load(BUILTIN.read_text())["models"]["gpt-5-5"]["price"]


def client(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def cost_nano(input: int, output: int, cache_read: int) -> int:
    p = {k: Fraction(str(v)) for k, v in PRICES.items()}
    usd = (input * p["input"] + output * p["output"] + cache_read * p["cache_read"]) / 10**6
    return math.floor(usd * 10**9 + Fraction(1, 2))


def replaying(fake: FakeUpstream, answer: Answer) -> list[str]:
    """Answer every Responses request with ``answer`` once it passes OpenAI's rules; returns the refusals."""
    refused: list[str] = []

    def handle(got: Received) -> Answer | None:
        if not got.path.endswith("/responses"):
            return None
        try:
            validate(got.body, got.headers, ISSUED)
        except Rejected as exc:
            refused.append(exc.message)
            return Answer(status=400, body=orjson.dumps({"error": {"message": exc.message,
                                                                   "type": "invalid_request_error"}}))
        return answer

    fake.handler = handle
    return refused


def messages_request(recorded: dict[str, Any]) -> dict[str, Any]:
    """The Messages request an Anthropic client would send for a recorded Responses request."""
    req = responses_to_messages_request({**recorded, "store": False}, "gpt-5-5")
    req.pop("stream", None)
    req.pop("thinking", None)
    if recorded.get("reasoning"):
        req["thinking"] = {"type": "enabled", "budget_tokens": 1024}
        req["max_tokens"] = max(req["max_tokens"], 2048)
    return req


def record(gw: Gateway, rid: str) -> tuple[int, int, int, int, str]:
    gw.wait_settled([rid])
    rows = gw.query("SELECT input_tokens, output_tokens, cache_read_tokens, cost, status FROM usage_records "
                    "WHERE request_id = ?", rid)
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(("name", "recorded", "raw"), RECORDED, ids=IDS)
def test_every_recorded_responses_interaction_reaches_the_anthropic_sdk(
        gateway: Gateway, fake: FakeUpstream, acct, name: str, recorded: dict[str, Any], raw: bytes,
        stream: bool) -> None:
    final = parse_sse(raw)[-1]["response"]
    answer = (Answer(chunks=[raw[i:i + 97] for i in range(0, len(raw), 97)], content_type="text/event-stream")
              if stream else Answer(body=orjson.dumps(final)))
    refused = replaying(fake, answer)
    c = client(gateway, acct["key"])
    req = messages_request(recorded)
    if stream:
        with c.messages.stream(**req) as s:
            message = s.get_final_message()
        rid = s.response.headers["request-id"]
    else:
        raw_resp = c.messages.with_raw_response.create(**req)
        message, rid = raw_resp.parse(), raw_resp.headers["request-id"]
    assert not refused
    sent = fake.requests_to("/openai-responses/responses")[-1].json()
    assert sent["model"] == "gpt-5.5" and sent["store"] is False
    assert [t["name"] for t in sent.get("tools", [])] == [t["name"] for t in recorded.get("tools", [])]
    texts = "".join(p["text"] for i in final["output"] if i["type"] == "message" for p in i["content"])
    assert "".join(b.text for b in message.content if b.type == "text") == texts
    calls = [(i["call_id"], i["name"], orjson.loads(i["arguments"])) for i in final["output"]
             if i["type"] == "function_call"]
    assert [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"] == calls
    assert message.stop_reason == ("tool_use" if calls else "end_turn")
    assert message.model == "gpt-5-5"
    usage = final["usage"]
    cached = usage["input_tokens_details"]["cached_tokens"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (usage["input_tokens"] - cached,
                                                                         usage["output_tokens"])
    expected = cost_nano(usage["input_tokens"] - cached, usage["output_tokens"], cached)
    assert record(gateway, rid) == (usage["input_tokens"] - cached, usage["output_tokens"], cached, expected,
                                    "succeeded")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_reasoning_comes_back_as_thinking_and_its_item_goes_back_unchanged(
        gateway: Gateway, fake: FakeUpstream, acct, stream: bool) -> None:
    name, recorded, raw = next(r for r in RECORDED if "reasoning" in r[0])
    final = parse_sse(raw)[-1]["response"]
    done = next(p["item"] for p in parse_sse(raw) if p["type"] == "response.output_item.done"
                and p["item"]["type"] == "reasoning")
    if not stream:
        done = next(i for i in final["output"] if i["type"] == "reasoning")
    replaying(fake, Answer(chunks=[raw], content_type="text/event-stream") if stream
              else Answer(body=orjson.dumps(final)))
    c = client(gateway, acct["key"])
    req = messages_request(recorded)
    if stream:
        with c.messages.stream(**req) as s:
            message = s.get_final_message()
    else:
        message = c.messages.create(**req)
    first = fake.requests_to("/openai-responses/responses")[-1].json()
    assert first["include"] == ["reasoning.encrypted_content"] and first["reasoning"]["summary"] == "auto"
    assert [b.type for b in message.content] == ["thinking", "text"]
    follow = {**req, "messages": [*req["messages"], {"role": "assistant", "content": [b.model_dump() for b in
                                                                                        message.content]},
                                  {"role": "user", "content": "Once more."}]}
    replaying(fake, Answer(body=orjson.dumps(final)))
    c.messages.create(**follow)
    second = fake.requests_to("/openai-responses/responses")[-1].json()
    items = [i for i in second["input"] if i.get("type") == "reasoning"]
    assert items == [{"id": done["id"], "summary": done["summary"], "encrypted_content": done["encrypted_content"],
                      "type": "reasoning"}]
    assert second["input"][second["input"].index(items[0]) + 1]["role"] == "assistant"


def test_cached_and_reasoning_tokens_are_billed_in_anthropics_split(gateway: Gateway, fake: FakeUpstream,
                                                                     acct) -> None:
    name, recorded, raw = next(r for r in RECORDED if "reasoning" in r[0])
    events = parse_sse(raw)
    events[-1]["response"]["usage"] = {"input_tokens": 3000, "input_tokens_details": {"cached_tokens": 2048},
                                       "output_tokens": 400, "output_tokens_details": {"reasoning_tokens": 350},
                                       "total_tokens": 3400}
    body = b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)
    replaying(fake, Answer(chunks=[body], content_type="text/event-stream"))
    with client(gateway, acct["key"]).messages.stream(**messages_request(recorded)) as s:
        message = s.get_final_message()
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        952, 2048, 400)
    assert record(gateway, s.response.headers["request-id"]) == (952, 400, 2048, cost_nano(952, 400, 2048),
                                                                 "succeeded")


def test_messages_clients_get_gpt5_rules_on_the_responses_upstream_with_the_dropped_params_named(
        gateway: Gateway, fake: FakeUpstream, acct) -> None:
    from responses_fake import StrictResponses
    fake.handler = StrictResponses()
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": acct["key"], "anthropic-version": "2023-06-01"},
                   json={"model": "gpt-5-5", "max_tokens": 300, "temperature": 0.3, "top_k": 5,
                         "stop_sequences": ["END"], "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["bytespike-dropped-params"] == "temperature,top_k,stop_sequences"
    sent = fake.requests_to("/openai-responses/responses")[-1].json()
    assert "temperature" not in sent and sent["max_output_tokens"] == 300
    assert fake.handler.rejected == []


# ---------------------------------------------------------------- SPEC section 8 config, no options


def strict_chat(got: Received) -> Answer | None:
    """OpenAI's Chat Completions rules for reasoning models, then the simulator answers."""
    body = got.json()
    model = body.get("model", "")
    if model.startswith("gpt-5"):
        if "max_tokens" in body:
            message = "Unsupported parameter: 'max_tokens' is not supported with this model. Use " \
                      "'max_completion_tokens' instead."
            return Answer(status=400, body=orjson.dumps({"error": {"message": message, "param": "max_tokens",
                                                                   "type": "invalid_request_error"}}))
        for key in ("temperature", "top_p"):
            if key in body and body[key] != 1:
                return Answer(status=400, body=orjson.dumps({"error": {
                    "message": f"Unsupported value: '{key}' does not support {body[key]} with this model. Only the "
                               "default (1) value is supported.", "param": key, "type": "invalid_request_error"}}))
    return None


@pytest.fixture(scope="module")
def spec_gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Any:
    d: Path = tmp_path_factory.mktemp("spec8")
    cfg = {
        "database_url": f"sqlite:///{d / 'bytespike.db'}", "redis_url": None, "admin_token": "t" * 32,
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": f"{fake.url}/anthropic", "api_key": "k-a"},
            "openai": {"type": "openai", "base_url": f"{fake.url}/openai/v1", "api_key": "k-o"},
            "gemini": {"type": "gemini", "base_url": f"{fake.url}/gemini", "api_key": "k-g"},
        },
        "models": {
            "claude-sonnet-4-6": {"aliases": ["claude-3-5-sonnet-20241022"],
                                  "price": {"input": 3, "output": 15, "cache_write": 3.75, "cache_write_1h": 6,
                                            "cache_read": 0.3},
                                  "deployments": [{"provider": "anthropic", "model": "claude-sonnet-4-6",
                                                   "priority": 0, "weight": 1}]},
            "gpt-5-5": {"price": {"input": 5, "output": 30, "cache_read": 0.5},
                        "deployments": [{"provider": "openai", "model": "gpt-5.5", "priority": 0, "weight": 1}]},
        },
        "groups": {"claude-default": {"models": ["claude-*"], "multiplier": 1},
                   "multi-vendor": {"models": ["*"], "multiplier": 1}},
    }
    gw = Gateway(d, cfg).start()
    yield gw
    gw.stop()


def test_a_spec_config_openai_provider_serves_gpt5_through_chat_completions(spec_gateway: Gateway,
                                                                          fake: FakeUpstream) -> None:
    acct = spec_gateway.account()
    fake.handler = strict_chat
    c = openai.OpenAI(base_url=spec_gateway.url + "/v1", api_key=acct["key"], max_retries=0)
    raw = c.chat.completions.with_raw_response.create(model="gpt-5-5", max_tokens=200, temperature=0.2,
                                                      messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content
    assert raw.headers["bytespike-dropped-params"] == "temperature"
    sent = fake.requests_to("/openai/v1/chat/completions")[-1].json()
    assert sent["max_completion_tokens"] == 200 and "max_tokens" not in sent and "temperature" not in sent
    chunks = list(c.chat.completions.create(model="gpt-5-5", max_tokens=50, stream=True,
                                            messages=[{"role": "user", "content": "hi"}]))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)


def test_a_spec_config_openai_provider_serves_gpt5_through_messages(spec_gateway: Gateway, fake: FakeUpstream) -> None:
    acct = spec_gateway.account()
    fake.handler = strict_chat
    raw = anthropic.Anthropic(base_url=spec_gateway.url, api_key=acct["key"], max_retries=0).messages \
        .with_raw_response.create(model="gpt-5-5", max_tokens=200, extra_body={"temperature": 0.4},
                                  messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().content[0].type == "text"
    assert raw.headers["bytespike-dropped-params"] == "temperature"
    sent = fake.requests_to("/openai/v1/chat/completions")[-1].json()
    assert sent["max_completion_tokens"] == 200 and "temperature" not in sent
    models = httpx.get(spec_gateway.url + "/v1/models", headers={"authorization": f"Bearer {acct['key']}"}).json()
    gpt = next(m for m in models["data"] if m["id"] == "gpt-5-5")
    assert any("bytespike-dropped-params" in c for c in gpt["caveats"])
