"""A simulated upstream speaking each vendor's real wire format, for ``serve --demo`` and the bench.

It answers Anthropic Messages (``/anthropic/v1/messages``, ``/count_tokens``), OpenAI Chat
Completions (``/openai/chat/completions``), OpenAI Responses (``/responses``) and Gemini (``/gemini/v1beta/models/{m}:generateContent``
and ``:streamGenerateContent?alt=sse``, ``:countTokens``), streaming and not. When the request
offers tools and the last user text says "use the tool" (or "call the tool"), it calls the first tool;
after a tool result it answers with text. Every answer says it is simulated.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import orjson

from bytespike.http.asgi import JSON, SSE, Receive, Scope, Send, read_body, send_body

DEMO_TEXT = "This is a simulated reply from the ByteSpike demo upstream (model {model}). No real model was called."


def _tokens(body: bytes) -> int:
    return max(1, math.ceil(len(body) / 4))


def _asks_for_tool(text: str) -> bool:
    low = text.lower()
    return "use the tool" in low or "call the tool" in low


def _wants_tool(req: dict[str, Any]) -> dict[str, Any] | None:
    tools = req.get("tools") or []
    msgs = req.get("messages") or _responses_turns(req.get("input"))
    if not tools or not msgs:
        return None
    last = msgs[-1]
    content = last.get("content")
    if last.get("role") == "tool" or (isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content)):
        return None
    text = content if isinstance(content, str) else " ".join(
        b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")
    if not _asks_for_tool(text):
        return None
    tool = tools[0]
    if "function" in tool and isinstance(tool["function"], dict):
        tool = tool["function"]
    return {"name": tool.get("name", "tool"), "input": {}}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = await read_body(receive, 64 * 1024 * 1024, None)
    path: str = scope["path"]
    try:
        req = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        req = {}
    if path.endswith("/v1/messages/count_tokens"):
        await send_body(send, 200, orjson.dumps({"input_tokens": _tokens(body)}), [(b"content-type", JSON)])
    elif path.endswith("/v1/messages"):
        await _anthropic(req, body, send)
    elif path.endswith("/chat/completions"):
        await _openai(req, body, send)
    elif path.endswith("/responses"):
        await _responses(req, body, send)
    elif ":countTokens" in path:
        await send_body(send, 200, orjson.dumps({"totalTokens": _tokens(body)}), [(b"content-type", JSON)])
    elif ":streamGenerateContent" in path or ":generateContent" in path:
        model = path.rsplit("/", 1)[-1].split(":", 1)[0]
        await _gemini(req, body, model, ":streamGenerateContent" in path, send)
    else:
        await send_body(send, 404, b'{"error":{"message":"not found"}}', [(b"content-type", JSON)])


async def _anthropic(req: dict[str, Any], body: bytes, send: Send) -> None:
    model = req.get("model", "unknown")
    tool = _wants_tool(req)
    text = DEMO_TEXT.format(model=model)
    inp = _tokens(body)
    out = max(1, len(text) // 4)
    mid = "msg_sim" + os.urandom(10).hex()
    if tool:
        block: dict[str, Any] = {"type": "tool_use", "id": "toolu_sim" + os.urandom(8).hex(), "name": tool["name"],
                                 "input": tool["input"]}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": text}
        stop = "end_turn"
    usage = {"input_tokens": inp, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": out}
    if not req.get("stream"):
        msg = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": [block],
               "stop_reason": stop, "stop_sequence": None, "usage": usage}
        await send_body(send, 200, orjson.dumps(msg), [(b"content-type", JSON)])
        return
    start_block = {**block, "input": {}} if tool else {"type": "text", "text": ""}
    delta = {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()} if tool else \
        {"type": "text_delta", "text": text}
    events = [
        ("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start_block}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                           "usage": {"output_tokens": out}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    payload = b"".join(b"event: " + n.encode() + b"\ndata: " + orjson.dumps(d) + b"\n\n" for n, d in events)
    await send_body(send, 200, payload, [(b"content-type", SSE)])


async def _openai(req: dict[str, Any], body: bytes, send: Send) -> None:
    model = req.get("model", "unknown")
    tool = _wants_tool(req)
    text = DEMO_TEXT.format(model=model)
    cid = "chatcmpl-sim" + os.urandom(10).hex()
    created = int(time.time())
    usage: dict[str, Any] = {"prompt_tokens": _tokens(body), "completion_tokens": max(1, len(text) // 4),
             "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    call = {"id": "call_sim" + os.urandom(8).hex(), "type": "function",
            "function": {"name": tool["name"], "arguments": "{}"}} if tool else None
    finish = "tool_calls" if tool else "stop"
    if not req.get("stream"):
        msg: dict[str, Any] = {"role": "assistant", "content": None if tool else text, "refusal": None}
        if call:
            msg["tool_calls"] = [call]
        resp = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}],
                "usage": usage, "system_fingerprint": None}
        await send_body(send, 200, orjson.dumps(resp), [(b"content-type", JSON)])
        return
    include = bool((req.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], reason: str | None) -> bytes:
        c: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                             "system_fingerprint": None,
                             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}
        if include:
            c["usage"] = None
        return b"data: " + orjson.dumps(c) + b"\n\n"

    parts = [chunk({"role": "assistant", "content": "" if not tool else None}, None)]
    if call:
        parts.append(chunk({"tool_calls": [{"index": 0, **call}]}, None))
    else:
        parts.append(chunk({"content": text}, None))
    parts.append(chunk({}, finish))
    if include:
        parts.append(b"data: " + orjson.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                               "model": model, "choices": [], "usage": usage}) + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    await send_body(send, 200, b"".join(parts), [(b"content-type", SSE)])


def _responses_turns(items: Any) -> list[dict[str, Any]]:
    """Responses input items as chat-like turns, enough for ``_wants_tool``."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call_output":
            out.append({"role": "tool", "content": ""})
        elif item.get("role") == "user":
            content = item.get("content")
            text = content if isinstance(content, str) else " ".join(
                p.get("text", "") for p in content or [] if isinstance(p, dict))
            out.append({"role": "user", "content": text})
    return out


async def _responses(req: dict[str, Any], body: bytes, send: Send) -> None:
    model = req.get("model", "unknown")
    tool = _wants_tool(req)
    text = DEMO_TEXT.format(model=model)
    rid = "resp_sim" + os.urandom(10).hex()
    out_tokens = max(1, len(text) // 4)
    usage = {"input_tokens": _tokens(body), "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": _tokens(body) + out_tokens}
    if tool:
        item: dict[str, Any] = {"id": "fc_sim" + os.urandom(8).hex(), "type": "function_call", "status": "completed",
                                "arguments": "{}", "call_id": "call_sim" + os.urandom(8).hex(), "name": tool["name"]}
    else:
        item = {"id": "msg_sim" + os.urandom(8).hex(), "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]}
    done = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed", "error": None,
            "incomplete_details": None, "model": model, "output": [item], "usage": usage}
    if not req.get("stream"):
        await send_body(send, 200, orjson.dumps(done), [(b"content-type", JSON)])
        return
    start = {**done, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": start},
                                    {"type": "response.in_progress", "response": start}]
    if tool:
        events += [{"type": "response.output_item.added", "output_index": 0,
                    "item": {**item, "status": "in_progress", "arguments": ""}},
                   {"type": "response.function_call_arguments.delta", "item_id": item["id"], "output_index": 0,
                    "delta": "{}"},
                   {"type": "response.function_call_arguments.done", "item_id": item["id"], "output_index": 0,
                    "arguments": "{}"}]
    else:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        common = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        events += [{"type": "response.output_item.added", "output_index": 0,
                    "item": {**item, "status": "in_progress", "content": []}},
                   {"type": "response.content_part.added", **common, "part": part},
                   {"type": "response.output_text.delta", **common, "delta": text, "logprobs": []},
                   {"type": "response.output_text.done", **common, "text": text, "logprobs": []},
                   {"type": "response.content_part.done", **common, "part": {**part, "text": text}}]
    events += [{"type": "response.output_item.done", "output_index": 0, "item": item},
               {"type": "response.completed", "response": done}]
    payload = b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps({**e, "sequence_number": i})
                       + b"\n\n" for i, e in enumerate(events))
    await send_body(send, 200, payload, [(b"content-type", SSE)])


async def _gemini(req: dict[str, Any], body: bytes, model: str, stream: bool, send: Send) -> None:
    text = DEMO_TEXT.format(model=model)
    tools = [d for t in req.get("tools") or [] for d in t.get("functionDeclarations") or []]
    contents = req.get("contents") or []
    last = contents[-1] if contents else {}
    wants = bool(tools) and not any("functionResponse" in p for p in last.get("parts") or []) and any(
        _asks_for_tool(p.get("text") or "") for p in last.get("parts") or [])
    part = {"functionCall": {"name": tools[0]["name"], "args": {}}, "thoughtSignature": "c2ltdWxhdGVk"} if wants \
        else {"text": text}
    usage = {"promptTokenCount": _tokens(body), "candidatesTokenCount": max(1, len(text) // 4),
             "totalTokenCount": _tokens(body) + max(1, len(text) // 4)}
    resp = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage, "modelVersion": model, "responseId": "sim" + os.urandom(8).hex()}
    if stream:
        await send_body(send, 200, b"data: " + orjson.dumps(resp) + b"\r\n\r\n", [(b"content-type", SSE)])
    else:
        await send_body(send, 200, orjson.dumps(resp), [(b"content-type", JSON)])
