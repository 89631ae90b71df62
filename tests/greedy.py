"""A greedy upstream: spends everything a request allows, as some OpenAI-compatible servers read it.

Installed as ``FakeUpstream.handler`` (``fake.handler = Greedy()``), it answers every vendor's wire
format the way the cheapest-to-fool server would:

- it parses JSON keeping the *first* of duplicate keys (the gateway's parser keeps the last);
- it reads ``max_tokens`` before ``max_completion_tokens`` and generates exactly that many tokens
  (no limit given: ``DEFAULT_OUTPUT`` tokens), in every one of ``n`` (``candidateCount``) choices;
- it uses every server tool it is offered up to its ``max_uses``;
- it reports input at one token per 4 bytes of the body it received.

Each generated token is one ``unit`` of text (default ``"tok "``: 4 characters; ``"字"`` for a CJK
answer of one character a token). ``served`` records, per request, the model it believed it was
asked for and the output tokens it produced, so tests can compare with what was billed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from fakeupstream import Answer, Received, json_answer

DEFAULT_OUTPUT = 32_000


def first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def parse_first_wins(body: bytes) -> Any:
    return json.loads(body, object_pairs_hook=first_wins)


@dataclass
class Served:
    path: str
    model: str
    output_tokens: int
    input_tokens: int
    server_tool_uses: int = 0


@dataclass
class Greedy:
    unit: str = "tok "
    chunk_tokens: int = 50  # tokens per streamed delta
    delay_between: float = 0.0
    served: list[Served] = field(default_factory=list)

    def __call__(self, got: Received) -> Answer | None:
        try:
            req = parse_first_wins(got.body)
        except ValueError:
            return json_answer({"error": {"type": "invalid_request_error", "message": "bad json"}}, 400)
        if not isinstance(req, dict):
            return json_answer({"error": {"type": "invalid_request_error", "message": "not an object"}}, 400)
        inp = max(1, math.ceil(len(got.body) / 4))
        path = got.path
        if path.endswith("/count_tokens") or ":countTokens" in path:
            return json_answer({"input_tokens": inp} if "/v1/messages" in path else {"totalTokens": inp})
        if path.endswith("/v1/messages"):
            return self._anthropic(path, req, inp)
        if path.endswith("/chat/completions"):
            return self._openai(path, req, inp)
        if ":generateContent" in path or ":streamGenerateContent" in path:
            return self._gemini(path, req, inp)
        return None

    # ------------------------------------------------------------ Anthropic Messages

    def _anthropic(self, path: str, req: dict[str, Any], inp: int) -> Answer:
        out = _int(req.get("max_tokens"), DEFAULT_OUTPUT)
        tools = req.get("tools") if isinstance(req.get("tools"), list) else []
        searches = sum(_int(t.get("max_uses"), 5) for t in tools
                       if isinstance(t, dict) and str(t.get("type", "")).startswith("web_search"))
        model = str(req.get("model"))
        self.served.append(Served(path, model, out, inp, searches))
        usage: dict[str, Any] = {"input_tokens": inp, "output_tokens": out}
        if searches:
            usage["server_tool_use"] = {"web_search_requests": searches}
        if req.get("stream") is not True:
            return json_answer({"id": "msg_greedy", "type": "message", "role": "assistant", "model": model,
                                "content": [{"type": "text", "text": self.unit * out}], "stop_reason": "max_tokens",
                                "stop_sequence": None, "usage": usage})
        start = {"type": "message_start", "message": {
            "id": "msg_greedy", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": inp, "output_tokens": 1}}}
        frames = [_sse("message_start", start),
                  _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}})]
        for n in _pieces(out, self.chunk_tokens):
            frames.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                       "delta": {"type": "text_delta", "text": self.unit * n}}))
        frames += [_sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   _sse("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                                          "usage": usage}),
                   _sse("message_stop", {"type": "message_stop"})]
        return Answer(chunks=frames, content_type="text/event-stream", delay_between=self.delay_between)

    # ------------------------------------------------------------ OpenAI Chat Completions

    def _openai(self, path: str, req: dict[str, Any], inp: int) -> Answer:
        limit = req["max_tokens"] if "max_tokens" in req else req.get("max_completion_tokens")
        out = _int(limit, DEFAULT_OUTPUT)
        n = max(_int(req.get("n"), 1), 1)
        model = str(req.get("model"))
        self.served.append(Served(path, model, out * n, inp))
        usage = {"prompt_tokens": inp, "completion_tokens": out * n, "total_tokens": inp + out * n}
        if req.get("stream") is not True:
            return json_answer({"id": "chatcmpl-greedy", "object": "chat.completion", "created": 1, "model": model,
                                "choices": [{"index": i, "finish_reason": "length",
                                             "message": {"role": "assistant", "content": self.unit * out}}
                                            for i in range(n)],
                                "usage": usage})
        base = {"id": "chatcmpl-greedy", "object": "chat.completion.chunk", "created": 1, "model": model}
        frames = [_data({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None} for i in range(n)]})]
        for k in _pieces(out, self.chunk_tokens):
            frames.append(_data({**base, "choices": [{"index": i, "delta": {"content": self.unit * k},
                                                      "finish_reason": None} for i in range(n)]}))
        frames.append(_data({**base, "choices": [{"index": i, "delta": {}, "finish_reason": "length"}
                                                 for i in range(n)]}))
        opts = req.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage") is True:
            frames.append(_data({**base, "choices": [], "usage": usage}))
        frames.append(b"data: [DONE]\n\n")
        return Answer(chunks=frames, content_type="text/event-stream", delay_between=self.delay_between)

    # ------------------------------------------------------------ Gemini generateContent

    def _gemini(self, path: str, req: dict[str, Any], inp: int) -> Answer:
        cfg = req.get("generationConfig") if isinstance(req.get("generationConfig"), dict) else {}
        out = _int(cfg.get("maxOutputTokens"), DEFAULT_OUTPUT)
        n = max(_int(cfg.get("candidateCount"), 1), 1)
        model = path.rsplit("/", 1)[-1].split(":", 1)[0]
        self.served.append(Served(path, model, out * n, inp))
        usage = {"promptTokenCount": inp, "candidatesTokenCount": out * n, "totalTokenCount": inp + out * n}

        def chunk(k: int, finish: str | None) -> dict[str, Any]:
            cands = []
            for i in range(n):
                c: dict[str, Any] = {"index": i, "content": {"role": "model", "parts": [{"text": self.unit * k}]}}
                if finish:
                    c["finishReason"] = finish
                cands.append(c)
            return {"candidates": cands, "modelVersion": model}

        if ":streamGenerateContent" not in path:
            return json_answer({**chunk(out, "MAX_TOKENS"), "usageMetadata": usage})
        pieces = _pieces(out, self.chunk_tokens)
        frames = [_data(chunk(k, None)) for k in pieces[:-1]]
        frames.append(_data({**chunk(pieces[-1] if pieces else 0, "MAX_TOKENS"), "usageMetadata": usage}))
        return Answer(chunks=frames, content_type="text/event-stream", delay_between=self.delay_between)


def _int(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else default


def _pieces(total: int, size: int) -> list[int]:
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _data(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"
