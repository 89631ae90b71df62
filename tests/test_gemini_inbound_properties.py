"""Generated answers and conversations through the Gemini inbound codec.

Any Messages answer, however its deltas are split, must reach a Gemini client as chunks
google-genai reads, and the history the client sends back must rebuild the same assistant turn
(signed thinking included). Any Gemini conversation must become a Messages request Claude accepts.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from google.genai import types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bytespike.protocols.gemini.inbound import (
    GeminiRequestError,
    MessagesToGeminiStream,
    gemini_to_messages_request,
    message_to_gemini_response,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")

words = st.text(alphabet=st.sampled_from("ab Zé\n{}\"+/"), min_size=1, max_size=10)
signatures = st.text(alphabet=st.sampled_from("AZaz09+/="), min_size=1, max_size=12)
arguments = st.dictionaries(st.sampled_from(["city", "q", "n"]),
                            st.one_of(words, st.integers(-5, 5), st.lists(st.booleans(), max_size=2)), max_size=3)
blocks = st.lists(st.one_of(
    st.builds(lambda t, s: {"type": "thinking", "thinking": t, "signature": s}, words, signatures),
    st.builds(lambda d: {"type": "redacted_thinking", "data": d}, signatures),
    st.builds(lambda t: {"type": "text", "text": t}, words),
    st.builds(lambda n, a: {"type": "tool_use", "name": n, "input": a},
              st.sampled_from(["get_weather", "search"]), arguments),
), min_size=1, max_size=6)


def _pieces(draw: Any, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(len(text) - 1, 1)), max_size=3))) if len(text) > 1 else []
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if text[a:b]]


@st.composite
def answers(draw: Any) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]], str]:
    """(content blocks, a Messages stream of them with randomly split deltas, stop reason)."""
    content = draw(blocks)
    for i, b in enumerate(content):
        if b["type"] == "tool_use":
            b["id"] = f"toolu_{i}"
    stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else draw(
        st.sampled_from(["end_turn", "max_tokens", "stop_sequence"]))
    evs: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": {
        "id": "msg_p", "content": [], "usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1}}})]
    for i, b in enumerate(content):
        start = dict(b)
        if b["type"] == "thinking":
            start.update(thinking="", signature="")
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(draw, b["thinking"])]
            deltas.append({"type": "signature_delta", "signature": b["signature"]})
        elif b["type"] == "text":
            start["text"] = ""
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(draw, b["text"])]
        elif b["type"] == "tool_use":
            start["input"] = {}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(draw, json.dumps(b["input"]))]
        else:
            deltas = []
        evs.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        evs += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        evs.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    evs.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop},
                                  "usage": {"output_tokens": 9}}))
    evs.append(("message_stop", {"type": "message_stop"}))
    return content, evs, stop


def merged(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent text blocks joined: a Gemini client may keep a streamed text as several parts."""
    out: list[dict[str, Any]] = []
    for b in content:
        if b["type"] == "text" and out and out[-1]["type"] == "text":
            out[-1] = {"type": "text", "text": out[-1]["text"] + b["text"]}
        else:
            out.append(dict(b))
    return out


def kept_history(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What google-genai keeps of the answer: its non-thought parts, bytes re-encoded URL-safe."""
    parts = []
    for chunk in chunks:
        response = types.GenerateContentResponse.model_validate(chunk)
        content = response.candidates[0].content if response.candidates else None
        for part in (content.parts if content and content.parts else []):
            if not part.thought:
                parts.append(part.model_dump(mode="json", by_alias=True, exclude_none=True))
    return parts


@given(answers(), st.booleans())
@SETTINGS
def test_any_answer_reaches_a_gemini_client_and_its_history_rebuilds_the_turn(answer: Any, show: bool) -> None:
    content, evs, stop = answer
    sink = MessagesToGeminiStream("m", include_thoughts=show)
    chunks = [c for name, data in evs for c in sink.feed(name, data)]
    assert chunks[-1]["candidates"][0]["finishReason"] == ("MAX_TOKENS" if stop == "max_tokens" else "STOP")
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["usageMetadata"] == {"promptTokenCount": 7, "candidatesTokenCount": 9, "totalTokenCount": 16,
                                           "cachedContentTokenCount": 2}
    thoughts = "".join(p["text"] for c in chunks for p in c["candidates"][0].get("content", {}).get("parts", [])
                       if p.get("thought"))
    assert thoughts == ("".join(b["thinking"] for b in content if b["type"] == "thinking") if show else "")

    history = kept_history(chunks)
    req = gemini_to_messages_request({"contents": [{"role": "user", "parts": [{"text": "q"}]},
                                                   {"role": "model", "parts": history}]}, "m", 100)
    assert merged(req["messages"][1]["content"]) == merged(content)

    whole = message_to_gemini_response({"id": "msg_p", "content": content, "stop_reason": stop,
                                        "usage": {"input_tokens": 5, "output_tokens": 9}}, "m", show)
    again = gemini_to_messages_request({"contents": [{"role": "user", "parts": [{"text": "q"}]},
                                                     whole["candidates"][0]["content"]]}, "m", 100)
    assert merged(again["messages"][1]["content"]) == merged(content)


# --------------------------------------------------------------------------------------------------
# Generated conversations
# --------------------------------------------------------------------------------------------------

call_ids = st.one_of(st.none(), st.text(alphabet=st.sampled_from("ab1_-.:/+= "), min_size=1, max_size=4))
names = st.sampled_from(["get_weather", "search", "now"])
user_parts = st.one_of(
    st.builds(lambda t: {"text": t}, st.text(alphabet=st.sampled_from("ab \n"), max_size=4)),
    st.just({"inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"\x89PNG").decode()}}),
    st.builds(lambda i, n, ok: {"functionResponse": {
        **({"id": i} if i else {}), "name": n, "response": {"output" if ok else "error": "r"}}}, call_ids, names,
        st.booleans()),
)
model_parts = st.one_of(
    st.builds(lambda t: {"text": t}, st.text(alphabet=st.sampled_from("ab \n"), max_size=4)),
    st.builds(lambda t: {"text": t, "thought": True}, st.text(alphabet="ab", max_size=3)),
    st.builds(lambda i, n, a: {"functionCall": {**({"id": i} if i else {}), "name": n, "args": a}},
              call_ids, names, arguments),
)
contents = st.lists(st.one_of(
    st.builds(lambda p: {"role": "user", "parts": p}, st.lists(user_parts, max_size=4)),
    st.builds(lambda p: {"role": "model", "parts": p}, st.lists(model_parts, max_size=4)),
), min_size=1, max_size=6)


@given(contents)
@SETTINGS
def test_any_gemini_conversation_becomes_a_messages_request_claude_accepts(convo: list[dict[str, Any]]) -> None:
    try:
        req = gemini_to_messages_request({"contents": convo}, "m", 100)
    except GeminiRequestError as exc:
        assert exc.param and exc.param.startswith("contents")
        return
    turns = req["messages"]
    assert turns[0]["role"] == "user"
    assert all(a["role"] != b["role"] for a, b in zip(turns, turns[1:], strict=False))
    for i, turn in enumerate(turns):
        assert turn["content"], "no empty turn"
        for b in turn["content"]:
            assert b["type"] != "text" or b["text"], "no empty text block"
        if turn["role"] == "assistant":
            ids = [b["id"] for b in turn["content"] if b["type"] == "tool_use"]
            assert all(ID_PATTERN.match(x) for x in ids) and len(set(ids)) == len(ids)
            if ids and i + 1 < len(turns):
                nxt = turns[i + 1]["content"]
                head = [b["tool_use_id"] for b in nxt[:len(ids)] if b["type"] == "tool_result"]
                assert sorted(head) == sorted(ids), "each call answered first in the next turn"
        else:
            prev = {b["id"] for b in turns[i - 1]["content"] if b["type"] == "tool_use"} if i else set()
            results = [b for b in turn["content"] if b["type"] == "tool_result"]
            assert all(r["tool_use_id"] in prev for r in results)
            kinds = [b["type"] for b in turn["content"]]
            assert kinds == sorted(kinds, key=lambda k: k != "tool_result"), "results come first"
    declared = {t["name"] for t in req.get("tools", [])}
    assert {b["name"] for t in turns for b in t["content"] if b["type"] == "tool_use"} <= declared
