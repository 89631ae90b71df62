"""Test helpers for models served by several deployments: config pieces, scripted Anthropic
streams, and what the gateway's database says about a request."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from conftest import Gateway
from fakeupstream import Answer, Received

V = {"anthropic-version": "2023-06-01"}


def provider(base_url: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "anthropic", "base_url": base_url, "api_key": f"upstream-secret-{name}", **extra}


def model(*deployments: dict[str, Any]) -> dict[str, Any]:
    return {"price": {"input": 1, "output": 5}, "deployments": list(deployments)}


def dep(provider: str, upstream_model: str, priority: int = 0, weight: int = 1) -> dict[str, Any]:
    return {"provider": provider, "model": upstream_model, "priority": priority, "weight": weight}


def hello(model_id: str, *, stream: bool = False, user: str | None = None, text: str = "hi") -> dict[str, Any]:
    body: dict[str, Any] = {"model": model_id, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    if user is not None:
        body["metadata"] = {"user_id": user}
    return body


def post(gw: Gateway, key: str, body: dict[str, Any], timeout: float = 30) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", json=body, headers={**V, "x-api-key": key}, timeout=timeout)


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in text.split("\n\n"):
        name, data = "", ""
        for line in frame.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if data:
            out.append((name, orjson.loads(data)))
    return out


def stream_chunks(parts: list[str], model_id: str = "m", input_tokens: int = 12, output_tokens: int = 7) -> list[bytes]:
    """A well-formed Anthropic SSE answer, one event per chunk."""

    def ev(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    chunks = [
        ev("message_start", {"type": "message_start", "message": {
            "id": "msg_test", "type": "message", "role": "assistant", "model": model_id, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}),
    ]
    for p in parts:
        chunks.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": p}}))
    chunks += [
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                             "usage": {"output_tokens": output_tokens}}),
        ev("message_stop", {"type": "message_stop"}),
    ]
    return chunks


def stream_answer(parts: list[str], **kw: Any) -> Answer:
    return Answer(chunks=stream_chunks(parts), content_type="text/event-stream; charset=utf-8", **kw)


def message_answer(text: str = "Hello", **kw: Any) -> Answer:
    """A whole (non-streamed) Anthropic answer."""
    return Answer(body=orjson.dumps({
        "id": "msg_test", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3}}), **kw)


def overloaded(**kw: Any) -> Answer:
    return Answer(status=529, body=orjson.dumps({"type": "error", "error": {"type": "overloaded_error",
                                                                            "message": "Overloaded"}}), **kw)


def to(received: list[Received], fragment: str) -> int:
    """How many requests the fake upstream got under a path fragment (a provider's base URL)."""
    return sum(1 for r in received if fragment in r.path)


def record(gw: Gateway, request_id: str) -> dict[str, Any]:
    rows = gw.query("SELECT provider, status, cost, input_tokens, output_tokens, error_type FROM usage_records "
                    "WHERE request_id = ?", request_id)
    assert len(rows) == 1, f"{len(rows)} usage records for {request_id}"
    provider, status, cost, inp, out, error_type = rows[0]
    return {"provider": provider, "status": status, "cost": cost, "input_tokens": inp, "output_tokens": out,
            "error_type": error_type}


def charges(gw: Gateway, request_id: str) -> int:
    return gw.query("SELECT COUNT(*) FROM ledger WHERE request_id = ? AND kind = 'charge'", request_id)[0][0]
