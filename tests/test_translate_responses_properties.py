"""Properties of the Responses translators over generated inputs: every Messages request becomes a
body OpenAI's rules accept, recorded streams cut at any byte give the same events, and every
Messages answer becomes a Responses stream the SDK accepts whose items come back as the same blocks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bytespike.protocols.openai_responses import (
    ResponsesStreamTranslator,
    responses_to_messages_request,
    to_responses_request,
)
from bytespike.protocols.openai_responses.output import message_events
from bytespike.protocols.openai_responses.upstream import GENERIC, OPENAI_GPT5, ResponsesDialect
from bytespike.protocols.sse import SSEParser
from responses_fake import validate
from responses_support import check_responses_stream, recorded_interactions
from test_anthropic_stream import accumulate, check_stream
from test_translate_properties import PROPERTY, SECRET, messages_request
from test_translate_responses_inbound import responses_stream


@PROPERTY
@given(req=messages_request(), dialect=st.sampled_from([GENERIC, OPENAI_GPT5]))
def test_generated_requests_translate_to_bodies_openai_accepts(req: dict[str, Any], dialect: ResponsesDialect) -> None:
    before = orjson.dumps(req)
    model = "gpt-5.5" if dialect is OPENAI_GPT5 else "gpt-4o"
    body = to_responses_request(req, model, dialect)
    wire = orjson.dumps(body)
    assert SECRET.encode() not in wire, "Anthropic-signed thinking reached OpenAI"
    validate(wire)
    assert body["store"] is False
    assert orjson.dumps(req) == before, "the request was modified"


STREAMS = [(name, raw) for name, _, raw in recorded_interactions()]


def replay(raw: bytes, cuts: list[int]) -> list[tuple[str, dict[str, Any]]]:
    t = ResponsesStreamTranslator("m", "msg_cut")
    parser = SSEParser()
    bounds = [0, *sorted(set(cuts)), len(raw)]
    events: list[tuple[str, dict[str, Any]]] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        for frame in parser.feed(raw[a:b]):
            events += t.feed(orjson.loads(frame.data))
    for frame in parser.close():
        events += t.feed(orjson.loads(frame.data))
    return events


@pytest.mark.parametrize(("name", "raw"), STREAMS, ids=[n for n, _ in STREAMS])
def test_recorded_responses_streams_cut_anywhere_give_the_same_message_both_ways(name: str, raw: bytes) -> None:
    whole = replay(raw, [])
    check_stream(whole)
    expected = accumulate(whole)
    back = check_responses_stream(responses_stream(whole))
    assert back.status == "completed"

    @settings(max_examples=15, deadline=None)
    @given(cuts=st.lists(st.integers(0, len(raw)), max_size=40))
    def cut(cuts: list[int]) -> None:
        events = replay(raw, cuts)
        assert events == whole
        assert accumulate(events) == expected

    cut()


# --- Messages answers -> Responses streams, and back as the next request's input ---------------

texts = st.text(min_size=1, max_size=40)
signatures = st.one_of(st.text(alphabet="abcdefABCDEF0123456789+/=", min_size=8, max_size=60),
                       st.just("bytespike:1:gemini-thought:c2ln"))


@st.composite
def answer_blocks(draw: st.DrawFn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if draw(st.booleans()):
        blocks.append({"type": "thinking", "thinking": draw(texts), "signature": draw(signatures)})
    if draw(st.booleans()):
        blocks.append({"type": "redacted_thinking", "data": draw(signatures)})
    for _ in range(draw(st.integers(0, 2))):
        blocks.append({"type": "text", "text": draw(texts)})
    for i in range(draw(st.integers(0, 3))):
        blocks.append({"type": "tool_use", "id": f"toolu_{i}", "name": draw(st.sampled_from(["exec", "apply_patch"])),
                       "input": draw(st.dictionaries(st.sampled_from(["input", "cmd", "n"]), texts, max_size=2))})
    return blocks or [{"type": "text", "text": "x"}]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=answer_blocks(), stop=st.sampled_from(["end_turn", "max_tokens", "tool_use", "refusal"]),
       cached=st.integers(0, 50))
def test_generated_messages_answers_become_sdk_valid_streams_that_come_back_as_the_same_blocks(
        blocks: list[dict[str, Any]], stop: str, cached: int) -> None:
    message = {"id": "msg_p", "type": "message", "role": "assistant", "model": "m", "content": blocks,
               "stop_reason": stop, "usage": {"input_tokens": 10, "output_tokens": 5,
                                              "cache_read_input_tokens": cached}}
    custom = frozenset({"apply_patch"})
    events = responses_stream(message_events(message), {"tools": []}, custom)
    final = check_responses_stream(events)
    assert final.usage is not None and final.usage.input_tokens == 10 + cached
    assert final.status == ("completed" if stop in ("end_turn", "tool_use") else "incomplete")
    items = [i.model_dump(exclude_none=True) for i in final.output]
    req = responses_to_messages_request({"model": "m", "input": [{"role": "user", "content": "hi"}, *items,
                                                                  {"role": "user", "content": "next"}]}, "m")
    back = [b for m in req["messages"] if m["role"] == "assistant" for b in m["content"]]
    expected = [b if b["type"] != "tool_use" or b["name"] != "apply_patch" or set(b["input"]) == {"input"}
                else None for b in blocks]
    for got, want in zip(back, expected, strict=True):
        if want is None:  # a freeform call whose input was not one string: only its name is checked
            assert got["name"] == "apply_patch"
        elif want["type"] == "text":
            assert got == want
        else:
            assert got == want, (got, want)
