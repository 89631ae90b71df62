"""Helpers for Responses API tests: the recordings, and checks that a Responses stream is what
OpenAI's own SDK types accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from bytespike.protocols.sse import SSEParser

RECORDINGS = (Path(__file__).parent / "fixtures" / "recorded" / "anomalyco__opencode" / "packages" / "llm" / "test"
              / "fixtures" / "recordings")
CODEX_REQUEST = Path(__file__).parent / "fixtures" / "captured" / "codex_cli_0.171_request.json"
_EVENT = TypeAdapter(ResponseStreamEvent)


def recorded_interactions() -> list[tuple[str, dict[str, Any], bytes]]:
    """(name, request body, raw SSE answer) for every recorded Responses interaction."""
    out = []
    for path in sorted(RECORDINGS.glob("openai-responses*/*.json")):
        data = json.loads(path.read_text())
        for i, it in enumerate(data["interactions"]):
            out.append((f"{path.parent.name}/{path.stem}#{i}", json.loads(it["request"]["body"]),
                        it["response"]["body"].encode()))
    return out


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    parser = SSEParser()
    frames = parser.feed(raw) + parser.close()
    out = []
    for f in frames:
        payload = orjson.loads(f.data)
        assert f.event == payload["type"], f"event name {f.event!r} differs from data.type {payload['type']!r}"
        out.append(payload)
    return out


def check_responses_stream(events: list[dict[str, Any]]) -> Response:
    """Assert a Responses stream is well formed; returns the final Response as the SDK accumulates it.

    Every event parses with the SDK's own event types, sequence numbers count up from 0, output
    items open and close in order (deltas only inside their open item), and exactly one terminal
    event ends the stream.
    """
    assert events, "empty stream"
    assert events[0]["type"] == "response.created"
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    open_items: dict[int, str] = {}
    done_items: list[int] = []
    terminal = None
    for n, raw in enumerate(events):
        assert raw["sequence_number"] == n, f"sequence_number {raw['sequence_number']} at position {n}"
        assert terminal is None, f"{raw['type']} after {terminal}"
        event = _EVENT.validate_python(raw)
        kind = raw["type"]
        if kind == "response.output_item.added":
            index = raw["output_index"]
            assert index == len(done_items) and not open_items, f"item {index} opened out of order"
            open_items[index] = raw["item"]["id"]
        elif kind == "response.output_item.done":
            index = raw["output_index"]
            assert open_items.pop(index) == raw["item"]["id"]
            done_items.append(index)
        elif "item_id" in raw:
            assert open_items.get(raw["output_index"]) == raw["item_id"], f"{kind} outside its item"
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            terminal = kind
        state.handle_event(event)  # type: ignore[arg-type]
    assert terminal is not None, "the stream has no terminal event"
    final = Response.model_validate(events[-1]["response"])
    if terminal != "response.failed":
        assert not open_items, "items left open"
        assert len(final.output) == len(done_items)
    return final
