"""Translated routes end to end: the real ``anthropic`` SDK against the gateway, OpenAI, DeepSeek and
Gemini upstreams played by the fake upstream from recorded traffic or scripted answers.

Each test checks both sides of the gateway: what the upstream received (equal in meaning to what
the vendor's own client sent in the recording) and what the SDK got back (content blocks,
stop_reason, usage), plus the raw SSE against the stream invariants of PROTOCOLS.md section 8.
"""

from __future__ import annotations

import base64
import copy
import inspect
import json
import math
import random
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import orjson
import pytest
import yaml
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from bytespike.gateway.counting import estimate_tokens
from bytespike.protocols.gemini import upstream as gemini_translate
from bytespike.protocols.hub import gateway_signature, read_gateway_signature
from bytespike.protocols.openai_chat import upstream as chat_translate
from bytespike.protocols.sse import SSEParser
from conftest import BUILTIN, RECORDED, Gateway
from fakeupstream import Answer, FakeUpstream, Received, json_answer, sse_answer
from test_anthropic_stream import check_stream
from test_translate_gemini import anthropic_from_gemini, normalise
from test_translate_gemini import interactions as gemini_interactions
from test_translate_openai_chat import anthropic_from_chat, chunks_of, expected_from_sdk
from test_translate_openai_chat import interactions as chat_interactions

RAW_CHAT_STREAMS = sorted(
    (RECORDED / "openai__openai-python" / ".inline-snapshot" / "external").glob("*.bin")
)
TRANSLATED = ["gpt-5-5-chat", "gemini-3-1-pro", "deepseek-v4-pro"]
UPSTREAM_MODEL = {
    "gpt-5-5-chat": "gpt-5.5",
    "deepseek-v4-pro": "deepseek-v4-pro",
    "gemini-3-1-pro": "gemini-3.1-pro-preview",
}
CHAT_PATH = {"gpt-5-5-chat": "/openai/chat/completions", "deepseek-v4-pro": "/deepseek/chat/completions"}
GEMINI_PATH = "/gemini/v1beta/models/gemini-3.1-pro-preview:"
WEATHER = {
    "name": "get_weather",
    "description": "Get current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


# ---------------------------------------------------------------- the client side


class _Tee(httpx2.BaseTransport):
    """An ``httpx2`` transport (the HTTP library the SDK is built on) that keeps the raw bytes of
    the last response while the SDK reads them: one request shows both what the SDK made of it
    and what went over the wire."""

    def __init__(self) -> None:
        self._inner = httpx2.HTTPTransport()
        self.raw = b""
        self.headers = httpx2.Headers()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        self.raw = b""
        self.headers = response.headers
        inner = response.stream
        tee = self

        class _Stream(httpx2.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for chunk in inner:  # type: ignore[union-attr]
                    tee.raw += chunk
                    yield chunk

            def close(self) -> None:
                if isinstance(inner, httpx2.SyncByteStream):
                    inner.close()

        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_Stream(),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self._inner.close()


class Client:
    """The ``anthropic`` SDK pointed at the gateway, with the wire bytes of its last answer."""

    def __init__(self, gw: Gateway, key: str) -> None:
        self.gateway = gw
        self.key = key
        self.tee = _Tee()
        self.sdk = anthropic.Anthropic(
            base_url=gw.url,
            api_key=key,
            max_retries=0,
            http_client=httpx2.Client(transport=self.tee, timeout=30),
        )

    def ask(self, stream: bool, req: dict[str, Any]) -> anthropic.types.Message:
        """One Messages call, streamed (``messages.stream(...).get_final_message()``) or not; a
        streamed answer's wire bytes must pass the section 8 invariants."""
        method = self.sdk.messages.stream if stream else self.sdk.messages.create
        known = inspect.signature(method).parameters
        # This SDK release has no sampling parameters (temperature, top_p, top_k): they go as extra body.
        req = {k: v for k, v in req.items() if k != "stream"}
        args = {k: v for k, v in req.items() if k in known}
        extra = {k: v for k, v in req.items() if k not in known}
        if extra:
            args["extra_body"] = extra
        if not stream:
            return self.sdk.messages.create(**args)
        with self.sdk.messages.stream(**args) as s:
            final = s.get_final_message()
        assert self.tee.raw.startswith(b"event: message_start"), self.tee.raw[:200]
        check_stream(self.events())
        return final

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        parser = SSEParser()
        return [(e.event, orjson.loads(e.data)) for e in parser.feed(self.tee.raw) + parser.close()]


@pytest.fixture()
def client(gateway: Gateway, acct: dict[str, Any]) -> Client:
    return Client(gateway, acct["key"])


def blocks(message: anthropic.types.Message) -> list[dict[str, Any]]:
    """The message content as the client keeps it and sends back as the next assistant turn."""
    return [b.model_dump(exclude_none=True) for b in message.content]


def prompt_total(message: anthropic.types.Message) -> int:
    u = message.usage
    return u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)


# ---------------------------------------------------------------- upstream answers from recordings


def completion_of(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streaming chat.completion carrying what a recorded stream carries (the OpenAI SDK's
    own accumulation of its chunks), choice 0 only."""
    state = ChatCompletionStreamState()
    for chunk in chunks:
        if chunk.get("service_tier") not in (None, "auto", "default", "flex", "scale", "priority"):
            chunk = {k: v for k, v in chunk.items() if k != "service_tier"}
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    completion = state.current_completion_snapshot.model_dump(exclude_none=True)
    completion["object"] = "chat.completion"
    completion["choices"] = [c for c in completion["choices"] if c["index"] == 0]
    return completion


def gemini_chunks(raw: bytes) -> list[dict[str, Any]]:
    parser = SSEParser()
    return [orjson.loads(e.data) for e in parser.feed(raw) + parser.close() if e.data]


def gemini_response_of(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The single GenerateContentResponse ``:generateContent`` would give for a recorded stream:
    all parts in order (adjacent text fragments of one kind joined), the last chunk's finishReason
    and usage."""
    parts: list[dict[str, Any]] = []
    for chunk in chunks:
        for part in chunk["candidates"][0]["content"].get("parts", []):
            last = parts[-1] if parts else None
            if (
                last is not None
                and "text" in part
                and "text" in last
                and "thoughtSignature" not in last
                and bool(part.get("thought")) == bool(last.get("thought"))
            ):
                last["text"] += part["text"]
                if "thoughtSignature" in part:
                    last["thoughtSignature"] = part["thoughtSignature"]
            else:
                parts.append(copy.deepcopy(part))
    final = chunks[-1]
    candidate = {k: v for k, v in final["candidates"][0].items() if k != "content"}
    candidate["content"] = {"role": "model", "parts": parts}
    return {**{k: v for k, v in final.items() if k != "candidates"}, "candidates": [candidate]}


def gemini_expected(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What the final message must hold, read straight off the Gemini chunks."""
    parts = [p for c in chunks for p in c["candidates"][0]["content"].get("parts", [])]
    calls = [p["functionCall"] for p in parts if "functionCall" in p]
    usage = chunks[-1]["usageMetadata"]
    return {
        "calls": [(c["name"], c["args"]) for c in calls],
        "text": "".join(p.get("text", "") for p in parts if not p.get("thought")),
        "signatures": [("gemini-next", p["thoughtSignature"]) for p in parts if "thoughtSignature" in p],
        "stop_reason": "tool_use" if calls else "end_turn",
        "prompt": usage["promptTokenCount"],
        "output": usage.get("candidatesTokenCount", 0) + usage.get("thoughtsTokenCount", 0),
    }


# ---------------------------------------------------------------- 1. recorded Chat traffic


def chat_model(name: str) -> str:
    """The gateway model whose upstream stands in for the recorded one: DeepSeek for DeepSeek, and
    for OpenRouter's Claude (another OpenAI-compatible server); gpt-5-5 for OpenAI models."""
    return "deepseek-v4-pro" if "deepseek" in name or "openrouter-claude" in name else "gpt-5-5-chat"


def chat_received(got: dict[str, Any], model: str, recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the upstream got, with the dialect's documented differences from the recording (plain
    Chat Completions of gpt-4o-era clients) put back, after checking them."""
    got = copy.deepcopy(got)
    recorded = recorded or {}
    assert got.pop("model") == UPSTREAM_MODEL[model]
    if model == "gpt-5-5-chat":
        # GPT-5 takes max_completion_tokens, and reasoning stays off unless the client asks for thinking.
        assert got.pop("reasoning_effort") == "none"
        got["max_tokens"] = got.pop("max_completion_tokens")
        # ... and only the default temperature and top_p: others are dropped, not sent.
        for key in ("temperature", "top_p"):
            assert key not in got
            if key in recorded and recorded[key] != 1:
                got[key] = recorded[key]
    else:
        # No `thinking` in a Messages request means no thinking: DeepSeek is told so, and every
        # assistant turn carries its (here empty) reasoning_content, as thinking mode wants.
        assert got.pop("thinking") == {"type": "disabled"}
        for msg in got["messages"]:
            if msg["role"] == "assistant":
                assert msg.pop("reasoning_content") == ""
    return got


def chat_recorded(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k != "model"}
    if not stream:
        out.pop("stream")
        out.pop("stream_options")
    return out


def check_chat_message(final: anthropic.types.Message, chunks: list[dict[str, Any]], model: str) -> None:
    expected = expected_from_sdk(chunks)
    assert blocks(final) == expected["content"]
    assert final.stop_reason == expected["stop_reason"]
    assert prompt_total(final) == expected["prompt_tokens"]
    assert final.usage.output_tokens == expected["completion_tokens"]
    assert final.model == model and final.type == "message" and final.role == "assistant"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("name", "body", "raw"), chat_interactions(), ids=[i[0] for i in chat_interactions()]
)
def test_recorded_chat_interaction_replays_through_the_gateway(
    client: Client, fake: FakeUpstream, name: str, body: dict[str, Any], raw: bytes, stream: bool
) -> None:
    model = chat_model(name)
    chunks = chunks_of(raw)
    fake.queue(sse_answer(raw.decode(), chunk_size=61) if stream else json_answer(completion_of(chunks)))
    req = {**anthropic_from_chat(body), "model": model}
    final = client.ask(stream, req)
    (got,) = fake.received
    assert got.path == CHAT_PATH[model]
    assert chat_received(got.json(), model, body) == chat_recorded(body, stream)
    check_chat_message(final, chunks, model)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("path", RAW_CHAT_STREAMS, ids=lambda p: p.name[:12])
def test_recorded_openai_python_stream_reaches_the_sdk_as_the_same_message(
    client: Client, fake: FakeUpstream, path: Path, stream: bool
) -> None:
    chunks = chunks_of(path.read_bytes())
    fake.queue(sse_answer(path.read_text(), chunk_size=113) if stream else json_answer(completion_of(chunks)))
    final = client.ask(
        stream, {"model": "gpt-5-5-chat", "max_tokens": 512, "messages": [{"role": "user", "content": "go"}]}
    )
    check_chat_message(final, chunks, "gpt-5-5-chat")


# ---------------------------------------------------------------- 1. recorded Gemini traffic


def gemini_cassettes() -> list[str]:
    return sorted({name.split("#")[0] for name, _, _ in gemini_interactions()})


def check_gemini_message(final: anthropic.types.Message, chunks: list[dict[str, Any]]) -> None:
    expected = gemini_expected(chunks)
    content = blocks(final)
    assert [(b["name"], b["input"]) for b in content if b["type"] == "tool_use"] == expected["calls"]
    assert "".join(b["text"] for b in content if b["type"] == "text") == expected["text"]
    assert [read_gateway_signature(b["signature"]) for b in content if b["type"] == "thinking"] == expected[
        "signatures"
    ]
    assert final.stop_reason == expected["stop_reason"]
    assert prompt_total(final) == expected["prompt"]
    assert final.usage.output_tokens == expected["output"]
    assert final.model == "gemini-3-1-pro"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("cassette", gemini_cassettes())
def test_recorded_gemini_cassette_replays_through_the_gateway(
    client: Client, fake: FakeUpstream, cassette: str, stream: bool
) -> None:
    """Turn by turn: each later request is built from what the SDK got back before, so the tool-loop
    recording also shows the thoughtSignature travelling through the client and back."""
    kept: list[list[dict[str, Any]]] = []
    for name, body, raw in gemini_interactions():
        if name.split("#")[0] != cassette:
            continue
        chunks = gemini_chunks(raw)
        fake.queue(
            sse_answer(raw.decode(), chunk_size=89) if stream else json_answer(gemini_response_of(chunks))
        )
        req = {**anthropic_from_gemini(body, kept), "model": "gemini-3-1-pro"}
        final = client.ask(stream, req)
        got = fake.received[-1]
        assert got.path == GEMINI_PATH + ("streamGenerateContent" if stream else "generateContent")
        assert got.query == ("alt=sse" if stream else "")
        ours = got.json()
        # Gemini 3 cannot turn thinking off: no `thinking` in the request means its lowest level.
        assert ours["generationConfig"].pop("thinkingConfig") == {"thinkingLevel": "low"}, name
        assert normalise(ours) == normalise(body), name
        check_gemini_message(final, chunks)
        kept.append(blocks(final))
    assert len(fake.received) == len(kept) >= 1


# ---------------------------------------------------------------- scripted upstreams


def chat_answer(
    message: dict[str, Any], stream: bool, usage: dict[str, Any], rid: str = "chatcmpl-e2e"
) -> Answer:
    """A Chat Completions answer carrying ``message`` (content, reasoning_content, tool_calls), as
    one chat.completion or as a stream the way OpenAI sends one (role chunk, fragments, finish
    chunk, usage chunk, [DONE])."""
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    if not stream:
        choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        return json_answer(
            {
                "id": rid,
                "object": "chat.completion",
                "created": 1,
                "model": "up",
                "choices": [choice],
                "usage": usage,
            }
        )

    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        c = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        }
        return b"data: " + orjson.dumps(c) + b"\n\n"

    frames = [chunk({"role": "assistant", "content": ""})]
    for key in ("reasoning_content", "content"):
        text = message.get(key) or ""
        frames += [chunk({key: text[i : i + 7]}) for i in range(0, len(text), 7)]
    for n, call in enumerate(message.get("tool_calls") or ()):
        args = call["function"]["arguments"]
        frames.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": n,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        frames += [
            chunk({"tool_calls": [{"index": n, "function": {"arguments": args[i : i + 5]}}]})
            for i in range(0, len(args), 5)
        ]
    frames.append(chunk({}, finish))
    frames.append(
        b"data: "
        + orjson.dumps(
            {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up",
                "choices": [],
                "usage": usage,
            }
        )
        + b"\n\n"
    )
    frames.append(b"data: [DONE]\n\n")
    return Answer(chunks=frames, content_type="text/event-stream")


def gemini_answer(parts: list[dict[str, Any]], stream: bool, usage: dict[str, Any], rid: str) -> Answer:
    """A Gemini answer: one GenerateContentResponse, or an ``alt=sse`` stream with one part a chunk,
    repeated cumulative usage, finishReason on the last."""

    def response(chunk_parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": chunk_parts}, "index": 0}
        if last:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": "gemini-3.1-pro-preview",
            "responseId": rid,
        }

    if not stream:
        return json_answer(response(parts, True))
    frames = [
        b"data: " + orjson.dumps(response([p], i == len(parts) - 1)) + b"\r\n\r\n"
        for i, p in enumerate(parts)
    ]
    return Answer(chunks=frames, content_type="text/event-stream")


def chat_ends_in_tool_result(body: dict[str, Any]) -> bool:
    """Tool messages after the last assistant message: the client is returning tool results."""
    tail: list[dict[str, Any]] = []
    for msg in body["messages"]:
        tail = [] if msg["role"] == "assistant" else [*tail, msg]
    return any(m["role"] == "tool" for m in tail)


def gemini_ends_in_tool_result(body: dict[str, Any]) -> bool:
    return any("functionResponse" in p for p in body["contents"][-1]["parts"])


CHAT_USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 20},
}
GEMINI_USAGE = {
    "promptTokenCount": 120,
    "candidatesTokenCount": 30,
    "thoughtsTokenCount": 12,
    "totalTokenCount": 162,
    "cachedContentTokenCount": 20,
}
# Gemini signatures are base64: '+', '/' and '=' must survive the trip through the client.
SIG_CALL = base64.b64encode(b"\xfb\xff\xfe signature for the call " + bytes(range(40))).decode()
SIG_THOUGHT = base64.b64encode(b"\xfa\xfb thought signature \xff").decode()
SIG_TAIL = base64.b64encode(b"\xfe\xff trailing part signature?").decode()


def tool_responder(
    tool: str, args: dict[str, Any], reply: str, reasoning: str = "", tail_signature: bool = False
) -> Any:
    """A fake-upstream handler playing a model with one tool, in the format of the path it is
    called on: a call of ``tool`` when the request declares it and does not return a tool result,
    else ``reply``. Deciding from the request alone keeps side calls from stealing turns.
    ``reasoning`` is sent first (DeepSeek reasoning_content, a Gemini thought part);
    ``tail_signature`` ends Gemini text answers with a signed empty part, as Gemini 3 does."""
    calls = iter(range(1, 10_000))

    def handle(req: Received) -> Answer | None:
        n = next(calls)
        if req.path.endswith("/chat/completions"):
            body = req.json()
            declared = any(t["function"]["name"] == tool for t in body.get("tools") or ())
            message: dict[str, Any] = {"content": reply}
            if declared and not chat_ends_in_tool_result(body):
                message = {
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_e2e{n}",
                            "type": "function",
                            "function": {"name": tool, "arguments": json.dumps(args)},
                        }
                    ],
                }
            if reasoning:
                message["reasoning_content"] = reasoning
            return chat_answer(message, bool(body.get("stream")), CHAT_USAGE, f"chatcmpl-e2e{n}")
        if ":streamGenerateContent" in req.path or ":generateContent" in req.path:
            body = req.json()
            declared = any(
                d["name"] == tool for t in body.get("tools") or () for d in t["functionDeclarations"]
            )
            parts: list[dict[str, Any]] = [{"text": reply}]
            if tail_signature:
                parts.append({"text": "", "thoughtSignature": SIG_TAIL})
            if declared and not gemini_ends_in_tool_result(body):
                parts = [{"functionCall": {"name": tool, "args": args}, "thoughtSignature": SIG_CALL}]
            if reasoning:
                parts.insert(0, {"text": reasoning, "thought": True})
            return gemini_answer(parts, ":streamGenerateContent" in req.path, GEMINI_USAGE, f"resp-e2e{n}")
        return None

    return handle


def upstream_calls(fake: FakeUpstream, model: str) -> list[dict[str, Any]]:
    path = CHAT_PATH.get(model, GEMINI_PATH)
    return [r.json() for r in fake.received if r.path.startswith(path)]


# ---------------------------------------------------------------- 2. tool loops


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("model", TRANSLATED)
def test_sdk_drives_a_tool_loop_through_a_translated_model(
    client: Client, fake: FakeUpstream, model: str, stream: bool
) -> None:
    fake.handler = tool_responder("get_weather", {"city": "Paris"}, "Sunny and 22 C in Paris.")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    req = {"model": model, "max_tokens": 300, "system": "Use the tools.", "tools": [WEATHER]}

    first = client.ask(stream, {**req, "messages": messages})
    assert first.stop_reason == "tool_use" and first.model == model
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})

    messages += [
        {"role": "assistant", "content": blocks(first)},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 22 C"}],
        },
    ]
    second = client.ask(stream, {**req, "messages": messages})
    assert second.stop_reason == "end_turn"
    assert [b.type for b in second.content] == ["text"] and second.content[
        0
    ].text == "Sunny and 22 C in Paris."
    for message in (first, second):
        assert message.usage.cache_read_input_tokens == 20 and prompt_total(message) == 120

    turn1, turn2 = upstream_calls(fake, model)
    if model in CHAT_PATH:
        assert turn1["tools"][0]["function"]["name"] == "get_weather"
        assert turn2["messages"][-2]["tool_calls"] == [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ]
        assert turn2["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 22 C"}
        assert call.id == "call_e2e1"
        assert first.usage.output_tokens == 30
    else:
        assert turn1["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
        model_turn, results = turn2["contents"][-2:]
        assert model_turn == {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"id": call.id, "name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIG_CALL,
                }
            ],
        }
        assert results == {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": call.id,
                        "name": "get_weather",
                        "response": {"output": "sunny, 22 C"},
                    }
                }
            ],
        }
        assert first.usage.output_tokens == 30 + 12


@pytest.mark.parametrize("model", TRANSLATED)
def test_tool_result_error_reaches_each_upstream_in_its_own_form(
    client: Client, fake: FakeUpstream, model: str
):
    fake.handler = tool_responder("get_weather", {"city": "Atlantis"}, "No such city.")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Atlantis?"}]
    first = client.ask(False, {"model": model, "max_tokens": 100, "tools": [WEATHER], "messages": messages})
    call = first.content[-1]
    messages += [
        {"role": "assistant", "content": blocks(first)},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "is_error": True,
                    "content": [{"type": "text", "text": "unknown city"}],
                }
            ],
        },
    ]
    second = client.ask(True, {"model": model, "max_tokens": 100, "tools": [WEATHER], "messages": messages})
    assert second.content[0].text == "No such city."
    sent = upstream_calls(fake, model)[-1]
    if model in CHAT_PATH:
        assert sent["messages"][-1] == {
            "role": "tool",
            "tool_call_id": call.id,
            "content": "Error: unknown city",
        }
    else:
        assert sent["contents"][-1]["parts"] == [
            {
                "functionResponse": {
                    "id": call.id,
                    "name": "get_weather",
                    "response": {"error": "unknown city"},
                }
            }
        ]


def charge_nano(model: str, usage: dict[str, int]) -> int:
    """The catalogue price of ``model`` (USD per million tokens) applied to Anthropic-split usage,
    rounded once, half up, to nano-USD."""
    price = yaml.safe_load(BUILTIN.read_text())["models"][model.removesuffix("-chat")]["price"]  # conftest's copy
    usd = sum(Fraction(str(price[k])) * n for k, n in usage.items()) / 10**6
    return math.floor(usd * 10**9 + Fraction(1, 2))


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_usage_is_recorded_in_anthropic_split_and_billed_at_the_vendor_price(
    gateway: Gateway, client: Client, fake: FakeUpstream, model: str, stream: bool
) -> None:
    fake.handler = tool_responder("get_weather", {}, "Fine.")
    final = client.ask(
        stream, {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    )
    rid = client.tee.headers["request-id"]
    gateway.wait_settled([rid])
    ((inp, out, read, w5m, cost, asked, status),) = gateway.query(
        "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cost, model_asked, status "
        "FROM usage_records WHERE request_id = ?",
        rid,
    )
    output = 30 + (12 if model == "gemini-3-1-pro" else 0)
    assert (inp, out, read, w5m, asked, status) == (100, output, 20, 0, model, "succeeded")
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (
        100,
        output,
        20,
    )
    assert cost == charge_nano(model, {"input": 100, "output": output, "cache_read": 20}) > 0


# ---------------------------------------------------------------- 3. thinking round trips


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_deepseek_reasoning_comes_back_as_thinking_and_returns_as_reasoning_content(
    client: Client, fake: FakeUpstream, stream: bool
) -> None:
    reasoning = "The user wants Paris weather; call get_weather first."
    fake.handler = tool_responder("get_weather", {"city": "Paris"}, "Sunny.", reasoning=reasoning)
    req = {
        "model": "deepseek-v4-pro",
        "max_tokens": 4000,
        "tools": [WEATHER],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.ask(stream, {**req, "messages": messages})
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].thinking == reasoning
    assert read_gateway_signature(first.content[0].signature) == ("reasoning", "")
    assert first.stop_reason == "tool_use"

    messages += [
        {"role": "assistant", "content": blocks(first)},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "sunny"}],
        },
    ]
    second = client.ask(stream, {**req, "messages": messages})
    assert [b.type for b in second.content] == ["thinking", "text"] and second.content[1].text == "Sunny."

    turn1, turn2 = upstream_calls(fake, "deepseek-v4-pro")
    for sent in (turn1, turn2):
        assert sent["thinking"] == {"type": "enabled"} and sent["reasoning_effort"] == "high"
    assert turn2["messages"][-2] == {
        "role": "assistant",
        "content": None,
        "reasoning_content": reasoning,
        "tool_calls": [
            {
                "id": "call_e2e1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }


def gemini_thinking_turns(n: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Gemini 3 with thoughts on: a summary then a signed functionCall; after the tool result a
    signed thought, the answer in two parts, and the trailing empty part that carries a signature."""
    if not gemini_ends_in_tool_result(body):
        return [
            {"text": "**Checking** the weather tool is needed.", "thought": True},
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": SIG_CALL,
            },
        ]
    return [
        {"text": "The tool says sunny.", "thought": True, "thoughtSignature": SIG_THOUGHT},
        {"text": "It is sunny"},
        {"text": " in Paris."},
        {"text": "", "thoughtSignature": SIG_TAIL},
    ]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_gemini_thoughts_come_back_as_thinking_and_signatures_return_on_their_parts(
    client: Client, fake: FakeUpstream, stream: bool
) -> None:
    calls = iter(range(1, 100))

    def handle(req: Received) -> Answer | None:
        n = next(calls)
        parts = gemini_thinking_turns(n, req.json())
        return gemini_answer(parts, ":streamGenerateContent" in req.path, GEMINI_USAGE, f"think-{n}")

    fake.handler = handle
    req = {
        "model": "gemini-3-1-pro",
        "max_tokens": 4000,
        "tools": [WEATHER],
        "thinking": {"type": "enabled", "budget_tokens": 8000},
    }
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.ask(stream, {**req, "messages": messages})
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].thinking == "**Checking** the weather tool is needed."
    assert first.content[0].signature == gateway_signature("gemini-next", SIG_CALL)

    messages += [
        {"role": "assistant", "content": blocks(first)},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "sunny"}],
        },
    ]
    second = client.ask(stream, {**req, "messages": messages})
    # The signature after the answer text is left out: a thinking block there would end the
    # message after the answer (see GeminiStreamTranslator); Gemini validates only call signatures.
    assert [b.type for b in second.content] == ["thinking", "text"]
    assert second.content[0].thinking == "The tool says sunny."
    assert second.content[0].signature == gateway_signature("gemini-thought", SIG_THOUGHT)
    assert second.content[1].text == "It is sunny in Paris."
    assert SIG_TAIL not in json.dumps(blocks(second))
    assert second.stop_reason == "end_turn" and second.usage.output_tokens == 30 + 12

    messages += [{"role": "assistant", "content": blocks(second)}, {"role": "user", "content": "Thanks!"}]
    client.ask(stream, {**req, "messages": messages})

    sent = upstream_calls(fake, "gemini-3-1-pro")
    assert [s["generationConfig"]["thinkingConfig"] for s in sent] == [
        {"thinkingLevel": "high", "includeThoughts": True}
    ] * 3
    contents = sent[2]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert contents[1]["parts"] == [
        {
            "functionCall": {"id": first.content[1].id, "name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": SIG_CALL,
        }
    ]
    assert contents[3]["parts"] == [
        {"text": "The tool says sunny.", "thought": True, "thoughtSignature": SIG_THOUGHT},
        {"text": "It is sunny in Paris."},
    ]
    assert sent[1]["contents"][1] == contents[1]


def test_a_conversation_moves_between_vendors_and_each_gets_a_history_it_accepts(
    client: Client, fake: FakeUpstream
) -> None:
    """Gemini calls a tool, DeepSeek reads the result, Claude answers next, Gemini again last (as
    when a Claude Code user switches /model): Gemini signatures go back only to Gemini, on their
    part; thinking the gateway signed never reaches Claude, which would reject its signature."""
    calls = iter(range(1, 100))

    def handle(req: Received) -> Answer | None:
        if ":streamGenerateContent" in req.path and next(calls) == 1:
            return gemini_answer(gemini_thinking_turns(1, req.json()), True, GEMINI_USAGE, "move-1")
        return None

    fake.handler = handle
    tools = {"tools": [WEATHER], "max_tokens": 500, "thinking": {"type": "enabled", "budget_tokens": 2048}}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.ask(True, {**tools, "model": "gemini-3-1-pro", "messages": messages})
    call = first.content[1]
    messages += [
        {"role": "assistant", "content": blocks(first)},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    for model in ("deepseek-v4-pro", "claude-sonnet-4-6", "gemini-3-1-pro"):
        answer = client.ask(True, {**tools, "model": model, "messages": messages})
        assert answer.stop_reason == "end_turn" and answer.model == model
        messages += [
            {"role": "assistant", "content": blocks(answer)},
            {"role": "user", "content": "And now?"},
        ]

    deepseek = upstream_calls(fake, "deepseek-v4-pro")[-1]["messages"]
    assert deepseek[1] == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    claude = fake.requests_to("/anthropic/v1/messages")[-1].json()["messages"]
    assert "bytespike:1:" not in json.dumps(claude)
    assert claude[1]["content"] == [
        {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}}
    ]
    gemini = upstream_calls(fake, "gemini-3-1-pro")[-1]["contents"]
    assert gemini[1]["parts"] == [
        {
            "functionCall": {"id": call.id, "name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": SIG_CALL,
        }
    ]
    assert [c["role"] for c in gemini] == ["user", "model", "user", "model", "user", "model", "user"]


TEXT_SIGNATURE_PLACES = {
    "first-part": [{"text": "It is", "thoughtSignature": SIG_TAIL}, {"text": " sunny."}],
    "last-part": [{"text": "It is"}, {"text": " sunny.", "thoughtSignature": SIG_TAIL}],
    "trailing-empty-part": [
        {"text": "It is"},
        {"text": " sunny."},
        {"text": "", "thoughtSignature": SIG_TAIL},
    ],
}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("place", list(TEXT_SIGNATURE_PLACES))
def test_gemini_text_answer_stays_one_last_text_block_wherever_its_signature_comes(
    client: Client, fake: FakeUpstream, place: str, stream: bool
) -> None:
    """Clients read the answer from the last text block (Claude Code prints only that one): a
    signature may go back before the text, never split it or follow it."""
    fake.handler = lambda req: (
        gemini_answer(
            TEXT_SIGNATURE_PLACES[place], ":streamGenerateContent" in req.path, GEMINI_USAGE, "sig-1"
        )
        if len(fake.received) == 1
        else None
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather?"}]
    first = client.ask(stream, {"model": "gemini-3-1-pro", "max_tokens": 50, "messages": messages})
    assert first.content[-1].type == "text" and first.content[-1].text == "It is sunny."
    assert [b.type for b in first.content].count("text") == 1
    messages += [{"role": "assistant", "content": blocks(first)}, {"role": "user", "content": "Sure?"}]
    client.ask(stream, {"model": "gemini-3-1-pro", "max_tokens": 50, "messages": messages})
    model_turn = upstream_calls(fake, "gemini-3-1-pro")[-1]["contents"][1]
    if place == "first-part":
        assert model_turn["parts"] == [{"text": "It is sunny.", "thoughtSignature": SIG_TAIL}]
    else:
        assert model_turn["parts"] == [{"text": "It is sunny."}]


# ---------------------------------------------------------------- 4. arbitrary chunk boundaries


def random_cuts(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(3, 40))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize(
    ("name", "body", "raw"), gemini_interactions(), ids=[i[0] for i in gemini_interactions()]
)
def test_recorded_gemini_stream_cut_anywhere_gives_the_same_final_message(
    client: Client, fake: FakeUpstream, name: str, body: dict[str, Any], raw: bytes
) -> None:
    req = {"model": "gemini-3-1-pro", "max_tokens": 200, "messages": [{"role": "user", "content": "go"}]}
    fake.queue(sse_answer(raw.decode()))
    whole = client.ask(True, req).model_dump()
    for seed in range(4):
        fake.queue(Answer(chunks=random_cuts(raw, seed), content_type="text/event-stream"))
        assert client.ask(True, req).model_dump() == whole, seed
    assert whole["content"] and whole["stop_reason"] in ("end_turn", "tool_use")


# ---------------------------------------------------------------- 5. what cannot be mapped

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF").decode()


def _image_in_tool_result() -> dict[str, Any]:
    return {
        "model": "gpt-5-5-chat",
        "max_tokens": 100,
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Show me the radar."},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_radar",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_radar",
                        "content": [
                            {"type": "text", "text": "radar attached"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                            },
                        ],
                    }
                ],
            },
        ],
    }


def _check_image_in_tool_result(sent: dict[str, Any]) -> None:
    tool, user = sent["messages"][-2:]
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_radar"
    assert tool["content"].startswith("radar attached\n") and "next user message" in tool["content"]
    assert user["role"] == "user"
    assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}} in user["content"]


def _document_to_deepseek() -> dict[str, Any]:
    return {
        "model": "deepseek-v4-pro",
        "max_tokens": 100,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "title": "report.pdf",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                    },
                    {"type": "text", "text": "Summarise the report."},
                ],
            }
        ],
    }


def _check_document_to_deepseek(sent: dict[str, Any]) -> None:
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "[report.pdf was attached here; this model cannot read files]"},
                {"type": "text", "text": "Summarise the report."},
            ],
        }
    ]
    assert PDF not in json.dumps(sent)


def _top_k_to_openai() -> dict[str, Any]:
    return {
        "model": "gpt-5-5-chat",
        "max_tokens": 100,
        "top_k": 5,
        "top_p": 0.5,
        "messages": [{"role": "user", "content": "hi"}],
    }


def _check_top_k_to_openai(sent: dict[str, Any]) -> None:
    # gpt-5.5 is an OpenAI reasoning model: it takes only the default top_p, so 0.5 is dropped too.
    assert "top_k" not in sent and "top_p" not in sent


def _parallel_off_to_gemini() -> dict[str, Any]:
    return {
        "model": "gemini-3-1-pro",
        "max_tokens": 100,
        "tools": [WEATHER],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "messages": [{"role": "user", "content": "hi"}],
    }


def _check_parallel_off_to_gemini(sent: dict[str, Any]) -> None:
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


UNMAPPABLE = {
    "image-in-tool-result-to-gpt-5-5-chat": (
        _image_in_tool_result,
        _check_image_in_tool_result,
        "Images and documents inside tool_result go in a user message",
    ),
    "document-to-deepseek": (
        _document_to_deepseek,
        _check_document_to_deepseek,
        "Text-only upstreams (DeepSeek) get a short note in place of each image or PDF",
    ),
    "top_k-to-gpt-5-5-chat": (_top_k_to_openai, _check_top_k_to_openai, "top_k is dropped"),
    "parallel-off-to-gemini": (
        _parallel_off_to_gemini,
        _check_parallel_off_to_gemini,
        "disable_parallel_tool_use has no Gemini equivalent and is ignored",
    ),
}


def model_entries(gw: Gateway, key: str, anthropic_shape: bool = True) -> dict[str, dict[str, Any]]:
    headers = {"x-api-key": key, **({"anthropic-version": "2023-06-01"} if anthropic_shape else {})}
    r = httpx.get(gw.url + "/v1/models", headers=headers)
    assert r.status_code == 200, r.text
    return {m["id"]: m for m in r.json()["data"]}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("case", list(UNMAPPABLE))
def test_what_cannot_be_mapped_is_dropped_or_noted_with_its_caveat_listed(
    gateway: Gateway, acct: dict[str, Any], client: Client, fake: FakeUpstream, case: str, stream: bool
) -> None:
    build, check, caveat = UNMAPPABLE[case]
    req = build()
    final = client.ask(stream, req)
    assert final.stop_reason == "end_turn" and "simulated" in final.content[0].text
    (sent,) = upstream_calls(fake, req["model"])
    check(sent)
    assert any(c.startswith(caveat) for c in model_entries(gateway, acct["key"])[req["model"]]["caveats"])


ATTRIBUTION = "x-anthropic-billing-header: cc_version=2.1.332.0b8; cc_entrypoint=sdk-cli; cch=36ee5;"


@pytest.mark.parametrize("model", TRANSLATED)
def test_claude_code_attribution_line_never_reaches_another_vendor(
    client: Client, fake: FakeUpstream, model: str
) -> None:
    """Its hash changes per request at the very head of the prompt: sent on, it would defeat the
    vendor's prefix caching (and it means nothing to them)."""
    system = [
        {"type": "text", "text": ATTRIBUTION},
        {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}},
    ]
    for form in (system, ATTRIBUTION + "\nYou are a coding agent."):
        client.ask(
            True,
            {
                "model": model,
                "max_tokens": 50,
                "system": form,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
    for sent in upstream_calls(fake, model):
        assert "x-anthropic-billing-header" not in json.dumps(sent)
        if model in CHAT_PATH:
            assert sent["messages"][0] == {"role": "system", "content": "You are a coding agent."}
        else:
            assert sent["systemInstruction"] == {"parts": [{"text": "You are a coding agent."}]}
    assert any(
        "x-anthropic-billing-header" in c for c in model_entries(client.gateway, client.key)[model]["caveats"]
    )


# ---------------------------------------------------------------- 6. count_tokens


def test_gemini_count_tokens_asks_gemini_and_returns_its_number(client: Client, fake: FakeUpstream) -> None:
    fake.queue(json_answer({"totalTokens": 4321}))
    counted = client.sdk.messages.count_tokens(
        model="gemini-3-1-pro",
        system="Be brief.",
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert counted.input_tokens == 4321
    (got,) = fake.received
    assert got.path == GEMINI_PATH + "countTokens"
    assert got.headers["x-goog-api-key"] == "upstream-secret-gemini"
    inner = got.json()["generateContentRequest"]
    assert inner["model"] == "models/gemini-3.1-pro-preview"
    assert inner["contents"] == [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}]
    assert inner["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert inner["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert "generationConfig" not in inner


@pytest.mark.parametrize("model", ["gpt-5-5-chat", "deepseek-v4-pro"])
def test_chat_models_count_tokens_locally_with_the_documented_estimate(
    client: Client, fake: FakeUpstream, model: str
) -> None:
    short = {"model": model, "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    longer = {**short, "system": "Be brief. " * 50, "tools": [WEATHER]}
    counts = [client.sdk.messages.count_tokens(**r).input_tokens for r in (short, short, longer)]  # type: ignore[arg-type]
    assert counts[0] > 0 and counts[0] == counts[1] < counts[2]
    assert counts[0] == estimate_tokens(short) and counts[2] == estimate_tokens(longer)
    assert fake.received == []


# ---------------------------------------------------------------- 7. the catalogue


@pytest.mark.parametrize("anthropic_shape", [True, False], ids=["anthropic", "openai"])
def test_models_list_marks_translated_protocols_and_lists_the_route_caveats(
    gateway: Gateway, acct: dict[str, Any], anthropic_shape: bool
) -> None:
    entries = model_entries(gateway, acct["key"], anthropic_shape)
    for model in ("gpt-5-5-chat", "deepseek-v4-pro"):
        assert entries[model]["protocols_aggregate"] == ["openai", "anthropic:translated", "gemini:translated",
                                                         "responses:translated"]
    assert entries["gemini-3-1-pro"]["protocols_aggregate"] == ["gemini", "anthropic:translated", "openai:translated",
                                                                "responses:translated"]
    assert entries["claude-sonnet-4-6"]["protocols_aggregate"] == ["anthropic", "openai:translated",
                                                                   "gemini:translated", "responses:translated"]
    assert entries["gpt-5-5"]["protocols_aggregate"] == ["responses", "anthropic:translated", "openai:translated",
                                                         "gemini:translated"]
    for model in ("gpt-5-5-chat", "deepseek-v4-pro"):
        assert set(chat_translate.CAVEATS) <= set(entries[model]["caveats"])
    assert set(gemini_translate.CAVEATS) <= set(entries["gemini-3-1-pro"]["caveats"])
    assert any("strict mode" in c for c in entries["gpt-5-5-chat"]["caveats"])
    assert not set(chat_translate.CAVEATS) & set(entries["claude-sonnet-4-6"]["caveats"])
