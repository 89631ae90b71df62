"""Gemini-client streams as bytes: recorded Gemini streams relayed untouched (SSE and JSON array),
recorded Claude streams rendered as Gemini chunks, and broken streams ended in Gemini's error shape."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from google.genai import types

from bytespike.errors import GatewayError
from bytespike.gateway.relay import TranslatedRelay
from bytespike.protocols.anthropic.relay import AnthropicSource
from bytespike.protocols.gemini.inbound.relay import GeminiPassthrough, GeminiSink, JSONArrayScanner
from bytespike.protocols.hub import usage_from_gemini
from test_translate_gemini import chunks_of, interactions

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
CLAUDE_STREAMS = sorted((RECORDED / "anthropics__anthropic-sdk-python" / "tests" / "lib" / "streaming" / "fixtures")
                        .glob("*.txt"))
STREAMS = [(n, raw) for n, _, raw in interactions()]


def as_json_array(raw: bytes) -> bytes:
    """A recorded SSE stream the way Gemini sends it without ``alt=sse``: one JSON array, pretty-printed."""
    return b"[" + b"\r\n,".join(json.dumps(c, indent=2).encode() for c in chunks_of(raw)) + b"]"


def feed(relay: GeminiPassthrough, raw: bytes, size: int) -> bytes:
    return b"".join(relay.feed(raw[i:i + size]) for i in range(0, len(raw), size)) + relay.end()


@pytest.mark.parametrize("name,raw", STREAMS, ids=[s[0] for s in STREAMS])
@pytest.mark.parametrize("size", [1, 7, 100_000])
def test_recorded_gemini_streams_pass_byte_for_byte_and_usage_is_read(name: str, raw: bytes, size: int) -> None:
    relay = GeminiPassthrough(sse=True)
    assert feed(relay, raw, size) == raw
    assert relay.ok
    assert relay.usage == usage_from_gemini(chunks_of(raw)[-1]["usageMetadata"])
    array = as_json_array(raw)
    relay = GeminiPassthrough(sse=False)
    assert feed(relay, array, size) == array
    assert relay.ok and relay.usage == usage_from_gemini(chunks_of(raw)[-1]["usageMetadata"])


def test_the_array_scanner_finds_elements_whatever_the_strings_hold() -> None:
    elements = [{"a": "}{][\"\\"}, {"b": [1, {"c": "]"}]}]
    raw = b"[" + b",\n".join(orjson.dumps(e) for e in elements) + b"]"
    for size in (1, 3, len(raw)):
        scanner = JSONArrayScanner()
        found = [e for i in range(0, len(raw), size) for e in scanner.feed(raw[i:i + size])]
        assert [orjson.loads(f) for f in found] == elements and scanner.closed


@pytest.mark.parametrize("sse", [True, False])
def test_a_gemini_stream_cut_before_its_finish_reason_ends_with_geminis_error(sse: bool) -> None:
    raw = next(r for n, r in STREAMS if n == "streams-text#0")
    first = chunks_of(raw)[0]
    first["candidates"][0].pop("finishReason", None)
    body = b"data: " + orjson.dumps(first) + b"\r\n\r\n" if sse else b"[" + orjson.dumps(first)
    relay = GeminiPassthrough(sse=sse)
    out = relay.feed(body) + relay.end()
    assert not relay.ok
    last = chunks_of(out)[-1] if sse else orjson.loads(out)[-1]
    assert last["error"]["status"] == "INTERNAL" and last["error"]["code"] == 500


def test_a_failure_mid_stream_is_told_in_geminis_shape() -> None:
    relay = GeminiPassthrough(sse=True)
    tail = relay.fail(GatewayError("timeout_error", "the upstream provider timed out"))
    assert chunks_of(tail) == [{"error": {"code": 504, "message": "the upstream provider timed out",
                                          "status": "DEADLINE_EXCEEDED"}}]


@pytest.mark.parametrize("path", CLAUDE_STREAMS, ids=[p.name for p in CLAUDE_STREAMS])
def test_recorded_claude_streams_reach_a_gemini_client_as_chunks_google_genai_reads(path: Path) -> None:
    relay = TranslatedRelay(AnthropicSource(), GeminiSink("claude-sonnet-4-6", True, True))
    raw = path.read_bytes()
    out = b"".join(relay.feed(raw[i:i + 11]) for i in range(0, len(raw), 11)) + relay.end()
    chunks = chunks_of(out)
    parsed = [types.GenerateContentResponse.model_validate(c) for c in chunks]
    if relay.ok:
        assert parsed[-1].candidates[0].finish_reason is not None
        assert parsed[-1].usage_metadata.prompt_token_count == relay.usage.get("input_tokens", 0) + \
            relay.usage.get("cache_read_input_tokens", 0) + relay.usage.get("cache_creation_input_tokens", 0)
    else:
        assert "error" in chunks[-1]
    text = "".join(part.text or "" for r in parsed for c in r.candidates or [] if c.content
                   for part in c.content.parts or [] if not part.thought)
    expected = "".join(e.get("delta", {}).get("text", "") for e in (orjson.loads(line[6:]) for line in
                       raw.splitlines() if line.startswith(b"data: ")) if isinstance(e, dict))
    assert text == expected


def test_thought_tokens_reach_a_gemini_client_from_an_openai_reasoning_model() -> None:
    from bytespike.protocols.openai_chat.upstream import ChatStreamTranslator
    from bytespike.protocols.sse import frame

    chunks = [{"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]},
              {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {"id": "c1", "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 30,
                                                    "prompt_tokens_details": {"cached_tokens": 20},
                                                    "completion_tokens_details": {"reasoning_tokens": 25}}}]
    raw = b"".join(frame(None, c) for c in chunks) + b"data: [DONE]\n\n"
    relay = TranslatedRelay(ChatStreamTranslator("gpt-5-5"), GeminiSink("gpt-5-5", True, False))
    out = relay.feed(raw) + relay.end()
    assert relay.ok
    assert chunks_of(out)[-1]["usageMetadata"] == {"promptTokenCount": 50, "candidatesTokenCount": 5,
                                                   "totalTokenCount": 80, "cachedContentTokenCount": 20,
                                                   "thoughtsTokenCount": 25}
