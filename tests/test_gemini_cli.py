"""The real Gemini CLI (pinned, from npm) runs ``-p`` through ByteSpike on a Gemini model and on
Claude, executing one tool call the model asks for, against fake upstreams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Gateway
from fakeupstream import Answer, FakeUpstream, Received, json_answer, sse_answer
from gemini_cli import gemini_entry, run_gemini

pytestmark = pytest.mark.skipif(gemini_entry() is None, reason="node and npm are needed to install Gemini CLI")

COMMAND = "echo bytespike-tool-ran"
FINAL = "The command printed bytespike-tool-ran."
GEMINI_SIGNATURE = "Z2VtaW5pLXNpZ25hdHVyZQ=="
CLAUDE_THINKING = {"type": "thinking", "thinking": "The user wants the shell command run.",
                   "signature": "EqQBCkYIBRgCKkBsigned+by/claude=="}


def _declares_shell(tools: Any) -> bool:
    return "run_shell_command" in json.dumps(tools or [])


def _gemini_answer(got: Received) -> Answer:
    req = got.json()
    answered = "functionResponse" in json.dumps(req["contents"])
    if _declares_shell(req.get("tools")) and not answered:
        parts = [{"text": "Running it.", "thought": True},
                 {"functionCall": {"name": "run_shell_command", "args": {"command": COMMAND}},
                  "thoughtSignature": GEMINI_SIGNATURE}]
    else:
        parts = [{"text": FINAL if answered else "ok"}]
    chunk = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
             "usageMetadata": {"promptTokenCount": 900, "candidatesTokenCount": 12, "totalTokenCount": 930,
                               "thoughtsTokenCount": 18}, "modelVersion": "gemini-3.1-pro-preview"}
    if ":streamGenerateContent" in got.path:
        return sse_answer(f"data: {json.dumps(chunk)}\r\n\r\n")
    return json_answer(chunk)


def _frame(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"


def _claude_answer(got: Received) -> Answer:
    req = got.json()
    last = req["messages"][-1]["content"]
    answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
    blocks: list[dict[str, Any]] = []
    if _declares_shell(req.get("tools")) and not answered:
        if req.get("thinking"):
            blocks.append(CLAUDE_THINKING)
        blocks.append({"type": "tool_use", "id": "toolu_01ShellCall", "name": "run_shell_command",
                       "input": {"command": COMMAND}})
    else:
        blocks.append({"type": "text", "text": FINAL if answered else "ok"})
    stop = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
    out = _frame("message_start", {"message": {"id": "msg_cli", "type": "message", "role": "assistant",
                                               "model": req["model"], "content": [], "stop_reason": None,
                                               "usage": {"input_tokens": 800, "output_tokens": 1}}})
    for i, b in enumerate(blocks):
        if b["type"] == "thinking":
            out += _frame("content_block_start", {"index": i, "content_block": {"type": "thinking", "thinking": ""}})
            out += _frame("content_block_delta", {"index": i, "delta": {"type": "thinking_delta",
                                                                        "thinking": b["thinking"]}})
            out += _frame("content_block_delta", {"index": i, "delta": {"type": "signature_delta",
                                                                        "signature": b["signature"]}})
        elif b["type"] == "tool_use":
            out += _frame("content_block_start", {"index": i, "content_block": {**b, "input": {}}})
            out += _frame("content_block_delta", {"index": i, "delta": {"type": "input_json_delta",
                                                                        "partial_json": json.dumps(b["input"])}})
        else:
            out += _frame("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
            out += _frame("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": b["text"]}})
        out += _frame("content_block_stop", {"index": i})
    out += _frame("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                    "usage": {"output_tokens": 40}})
    out += _frame("message_stop", {})
    return sse_answer(out)


def _answer(got: Received) -> Answer | None:
    if "/gemini/" in got.path:
        return _gemini_answer(got)
    if got.path.endswith("/v1/messages"):
        return _claude_answer(got)
    return None



@pytest.mark.parametrize("model", ["gemini-3-1-pro", "claude-sonnet-4-6"])
def test_gemini_cli_runs_a_prompt_and_a_tool_call_through_bytespike(gateway: Gateway, fake: FakeUpstream,
                                                                    tmp_path: Path, model: str) -> None:
    a = gateway.account()
    fake.handler = _answer
    run = run_gemini(gateway.url, a["key"], "Run the shell command `echo bytespike-tool-ran` and tell me what it "
                     "printed.", model=model, workdir=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.json()
    assert out["response"].strip() == FINAL
    assert out["stats"]["tools"]["totalCalls"] == 1 and out["stats"]["tools"]["totalSuccess"] == 1

    upstream = "/gemini/v1beta/models/gemini-3.1-pro-preview:" if model.startswith("gemini") else "/v1/messages"
    calls = fake.requests_to(upstream)
    assert len(calls) >= 2
    follow_up = calls[-1].json()
    if model.startswith("gemini"):
        assert calls[-1].path.endswith(":streamGenerateContent") and calls[-1].query == "alt=sse"
        assert "x-goog-api-key" in calls[-1].headers and a["key"] not in json.dumps(calls[-1].headers)
        parts = [p for c in follow_up["contents"] for p in c["parts"]]
        call = next(p for p in parts if "functionCall" in p)
        assert call["thoughtSignature"] == GEMINI_SIGNATURE  # the CLI's history, sent up unchanged
        result = next(p["functionResponse"] for p in parts if "functionResponse" in p)
        assert "bytespike-tool-ran" in json.dumps(result["response"])  # the command really ran
    else:
        turns = follow_up["messages"]
        assistant = turns[-2]["content"]
        assert assistant[0] == CLAUDE_THINKING  # Claude's signed thinking came back unmodified
        use = assistant[-1]
        assert use["type"] == "tool_use" and use["name"] == "run_shell_command" and use["input"] == {
            "command": COMMAND}
        result = turns[-1]["content"][0]
        assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"]
        assert "bytespike-tool-ran" in json.dumps(result["content"])
        assert follow_up["thinking"]["type"] == "enabled"
    gateway.wait_settled(account_id=a["account_id"], count=2)
    rows = gateway.query("SELECT protocol, model_asked, status, cost FROM usage_records WHERE account_id = ?",
                         a["account_id"])
    assert {r[0] for r in rows} == {"gemini"} and all(r[2] == "succeeded" and r[3] > 0 for r in rows)
    assert model in {r[1] for r in rows}
