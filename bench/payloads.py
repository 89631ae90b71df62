"""Fixed request and answer bodies for the bench: one short coding answer in every vendor's format.

The fake upstream serves the answers; the load generators send the requests. Every answer carries
the same 20 text pieces and the same usage, so routes differ only in what the gateway does.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

ANSWER_PIECES: tuple[str, ...] = (
    "To read", " a file", " line by", " line in", " Python,", " open it", " in a `with`",
    " block and", " iterate over", " the file", " object:\n\n", "```python\n", "with open(path)",
    " as f:\n", "    for line", " in f:\n", "        print(line", ".rstrip())\n", "```\n\n",
    "The file is closed for you when the block ends.",
)
ANSWER_TEXT = "".join(ANSWER_PIECES)
INPUT_TOKENS = 412
OUTPUT_TOKENS = 58

SYSTEM = (
    "You are a careful coding assistant working inside a developer's terminal. Answer briefly, show "
    "runnable code when it helps, prefer the standard library, and say when something depends on the "
    "platform. Never invent APIs: if you are unsure whether a function exists, say so and suggest how to "
    "check. Keep explanations to a few sentences unless the user asks for more detail."
)
TURNS: tuple[tuple[str, str], ...] = (
    ("user", "I have a 2 GB log file. What is the least memory-hungry way to go through it?"),
    ("assistant", "Stream it instead of loading it whole: read one line at a time, so only the current "
                  "line is in memory. Which language are you using?"),
    ("user", "Python 3.11. Show me how to read a file line by line."),
)
MAX_TOKENS = 1024

ANTHROPIC_MODEL = "claude-sonnet-4-6"
OPENAI_MODEL = "gpt-5.5"
GEMINI_MODEL = "gemini-3.1-pro-preview"


# ---------------------------------------------------------------- requests


def messages_request(model: str, stream: bool) -> bytes:
    """An Anthropic Messages request as a Claude client sends it."""
    return orjson.dumps({
        "model": model, "max_tokens": MAX_TOKENS, "system": SYSTEM,
        "messages": [{"role": r, "content": t} for r, t in TURNS], "stream": stream,
    })


def chat_request(model: str, stream: bool) -> bytes:
    """An OpenAI Chat Completions request as an OpenAI SDK sends it."""
    body: dict = {
        "model": model, "max_completion_tokens": MAX_TOKENS,
        "messages": [{"role": "system", "content": SYSTEM}, *({"role": r, "content": t} for r, t in TURNS)],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def gemini_request() -> bytes:
    """A generateContent request carrying the same conversation."""
    return orjson.dumps({
        "systemInstruction": {"parts": [{"text": SYSTEM}]},
        "contents": [{"role": "model" if r == "assistant" else "user", "parts": [{"text": t}]} for r, t in TURNS],
        "generationConfig": {"maxOutputTokens": MAX_TOKENS},
    })


# ---------------------------------------------------------------- answers


def _sse(event: str | None, data: dict, sep: bytes = b"\n\n") -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + sep


def anthropic_json() -> bytes:
    return orjson.dumps({
        "id": "msg_01BenchFixedAnswer000000", "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
        "content": [{"type": "text", "text": ANSWER_TEXT}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": OUTPUT_TOKENS, "service_tier": "standard"},
    })


def anthropic_events() -> list[bytes]:
    usage = {"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
             "output_tokens": 1, "service_tier": "standard"}
    events = [
        _sse("message_start", {"type": "message_start", "message": {
            "id": "msg_01BenchFixedAnswer000000", "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}}),
        _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
        _sse("ping", {"type": "ping"}),
    ]
    events += [_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": p}}) for p in ANSWER_PIECES]
    events += [
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": OUTPUT_TOKENS}}),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return events


def _chat_usage() -> dict:
    return {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


_CHAT_ID = "chatcmpl-BenchFixedAnswer0000000"
_CREATED = 1767225600


def openai_json() -> bytes:
    return orjson.dumps({
        "id": _CHAT_ID, "object": "chat.completion", "created": _CREATED, "model": OPENAI_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER_TEXT, "refusal": None,
                                             "annotations": []},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": _chat_usage(), "service_tier": "default", "system_fingerprint": "fp_bench",
    })


def openai_events(include_usage: bool) -> list[bytes]:
    def chunk(delta: dict, finish: str | None) -> bytes:
        c: dict = {"id": _CHAT_ID, "object": "chat.completion.chunk", "created": _CREATED, "model": OPENAI_MODEL,
                   "service_tier": "default", "system_fingerprint": "fp_bench",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            c["usage"] = None
        return _sse(None, c)

    events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events += [chunk({"content": p}, None) for p in ANSWER_PIECES]
    events.append(chunk({}, "stop"))
    if include_usage:
        events.append(_sse(None, {"id": _CHAT_ID, "object": "chat.completion.chunk", "created": _CREATED,
                                  "model": OPENAI_MODEL, "service_tier": "default",
                                  "system_fingerprint": "fp_bench", "choices": [], "usage": _chat_usage()}))
    events.append(b"data: [DONE]\n\n")
    return events


_RESP_ID = "resp_BenchFixedAnswer000000000000"


def responses_request(model: str, stream: bool) -> bytes:
    """An OpenAI Responses request as Codex CLI or ``client.responses`` sends it (stateless)."""
    body: dict = {"model": model, "instructions": SYSTEM, "input": [{"role": r, "content": t} for r, t in TURNS],
                  "max_output_tokens": MAX_TOKENS, "store": False}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def _responses_object(status: str) -> dict:
    done = status == "completed"
    item = {"id": "msg_BenchFixedAnswer0000", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": ANSWER_TEXT}]}
    usage = {"input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
             "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
    return {"id": _RESP_ID, "object": "response", "created_at": _CREATED, "status": status, "error": None,
            "incomplete_details": None, "model": OPENAI_MODEL, "output": [item] if done else [],
            "usage": usage if done else None}


def responses_json() -> bytes:
    return orjson.dumps(_responses_object("completed"))


def responses_events() -> list[bytes]:
    item = "msg_BenchFixedAnswer0000"
    common = {"item_id": item, "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    events: list[dict] = [{"type": "response.created", "response": _responses_object("in_progress")},
                          {"type": "response.in_progress", "response": _responses_object("in_progress")},
                          {"type": "response.output_item.added", "output_index": 0,
                           "item": {"id": item, "type": "message", "status": "in_progress", "role": "assistant",
                                    "content": []}},
                          {"type": "response.content_part.added", **common, "part": part}]
    events += [{"type": "response.output_text.delta", **common, "delta": p, "logprobs": []} for p in ANSWER_PIECES]
    final = _responses_object("completed")
    events += [{"type": "response.output_text.done", **common, "text": ANSWER_TEXT, "logprobs": []},
               {"type": "response.content_part.done", **common, "part": {**part, "text": ANSWER_TEXT}},
               {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
               {"type": "response.completed", "response": final}]
    return [_sse(e["type"], {**e, "sequence_number": i}) for i, e in enumerate(events)]


def _gemini_usage(final: bool) -> dict:
    out = OUTPUT_TOKENS if final else 0
    u: dict = {"promptTokenCount": INPUT_TOKENS, "totalTokenCount": INPUT_TOKENS + out,
               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": INPUT_TOKENS}]}
    if final:
        u["candidatesTokenCount"] = out
    return u


def gemini_json() -> bytes:
    return orjson.dumps({
        "candidates": [{"content": {"parts": [{"text": ANSWER_TEXT}], "role": "model"}, "finishReason": "STOP",
                        "index": 0}],
        "usageMetadata": _gemini_usage(True), "modelVersion": GEMINI_MODEL, "responseId": "BenchFixedAnswer0001",
    })


def gemini_events() -> list[bytes]:
    events = []
    last = len(ANSWER_PIECES) - 1
    for i, p in enumerate(ANSWER_PIECES):
        cand: dict = {"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}
        if i == last:
            cand["finishReason"] = "STOP"
        events.append(_sse(None, {"candidates": [cand], "usageMetadata": _gemini_usage(i == last),
                                  "modelVersion": GEMINI_MODEL, "responseId": "BenchFixedAnswer0001"},
                           sep=b"\r\n\r\n"))
    return events


# ---------------------------------------------------------------- scenarios


@dataclass(frozen=True, slots=True)
class Target:
    """One HTTP request the load generators repeat: path, headers and body, plus what a good answer ends with."""

    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expect: bytes  # a byte string every good answer contains


@dataclass(frozen=True, slots=True)
class Route:
    """A gateway route and the direct upstream call it is compared with."""

    name: str
    label: str
    stream: bool
    gateway: Target
    direct: Target


def _anthropic_headers(key: str) -> tuple[tuple[str, str], ...]:
    return (("content-type", "application/json"), ("x-api-key", key), ("anthropic-version", "2023-06-01"))


def _bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("content-type", "application/json"), ("authorization", f"Bearer {key}"))


def _direct_anthropic(stream: bool) -> Target:
    return Target("/anthropic/v1/messages", _anthropic_headers("upstream-secret-anthropic"),
                  messages_request(ANTHROPIC_MODEL, stream), b"message_stop" if stream else b'"end_turn"')


def routes(key: str) -> dict[str, Route]:
    """Every measured route, keyed by a short name, for a gateway key ``key``."""
    out: dict[str, Route] = {}
    for stream in (False, True):
        sfx = "stream" if stream else "json"
        kind = "stream" if stream else "non-stream"
        msg_expect = b"message_stop" if stream else b'"end_turn"'
        out[f"native-{sfx}"] = Route(
            f"native-{sfx}", f"/v1/messages claude ({kind})", stream,
            Target("/v1/messages", _anthropic_headers(key), messages_request(ANTHROPIC_MODEL, stream), msg_expect),
            _direct_anthropic(stream))
        resp_expect = b"response.completed" if stream else b'"completed"'
        direct_responses = Target("/openai-responses/responses", _bearer("upstream-secret-openai-responses"),
                                  responses_request(OPENAI_MODEL, stream), resp_expect)
        out[f"openai-{sfx}"] = Route(
            f"openai-{sfx}", f"/v1/messages gpt-5-5 via OpenAI Responses ({kind})", stream,
            Target("/v1/messages", _anthropic_headers(key), messages_request("gpt-5-5", stream), msg_expect),
            direct_responses)
        out[f"responses-{sfx}"] = Route(
            f"responses-{sfx}", f"/v1/responses gpt-5-5, native ({kind})", stream,
            Target("/v1/responses", _bearer(key), responses_request("gpt-5-5", stream), resp_expect),
            direct_responses)
        out[f"responses-claude-{sfx}"] = Route(
            f"responses-claude-{sfx}", f"/v1/responses claude ({kind})", stream,
            Target("/v1/responses", _bearer(key), responses_request(ANTHROPIC_MODEL, stream), resp_expect),
            _direct_anthropic(stream))
        gpath = f"/gemini/v1beta/models/{GEMINI_MODEL}:" + (
            "streamGenerateContent?alt=sse" if stream else "generateContent")
        out[f"gemini-{sfx}"] = Route(
            f"gemini-{sfx}", f"/v1/messages gemini-3-1-pro via Gemini ({kind})", stream,
            Target("/v1/messages", _anthropic_headers(key), messages_request("gemini-3-1-pro", stream), msg_expect),
            Target(gpath, (("content-type", "application/json"), ("x-goog-api-key", "upstream-secret-gemini")),
                   gemini_request(), b'"STOP"'))
        out[f"chat-{sfx}"] = Route(
            f"chat-{sfx}", f"/v1/chat/completions claude ({kind})", stream,
            Target("/v1/chat/completions", _bearer(key), chat_request(ANTHROPIC_MODEL, stream),
                   b"[DONE]" if stream else b'"stop"'),
            _direct_anthropic(stream))
    return out
