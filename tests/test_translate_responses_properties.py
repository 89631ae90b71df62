"""Properties of the Responses translators over generated inputs: every Messages request becomes a
body OpenAI's rules accept, and recorded streams cut at any byte give the same events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bytespike.protocols.openai_responses import ResponsesStreamTranslator, to_responses_request
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
