"""The real Codex CLI (pinned in tests/e2e/package.json) through ByteSpike, configured as
docs/codex-cli.md says: ``codex exec`` runs a tool call and gives a final answer, on gpt-5-5 (the
Responses API natively, against the strict fake of OpenAI) and on claude-sonnet-4-6 (translated,
against a fake that speaks Anthropic's wire)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from codex_cli import run_codex
from conftest import Gateway
from fakeupstream import Answer, FakeUpstream, Received
from responses_fake import Rejected, answer_for, sse, stream_events, validate

pytestmark = pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                                reason="the Codex CLI installs with npm and runs with node")

CMD = "echo codex-ran-$((6*7)) > marker.txt && cat marker.txt"
PROMPT = "Create marker.txt with the shell, then tell me what it says."


def _tool_output(items: list[dict[str, Any]]) -> str | None:
    outputs = [i for i in items if i.get("type") == "function_call_output"]
    if not outputs:
        return None
    out = outputs[-1]["output"]
    return out if isinstance(out, str) else orjson.dumps(out).decode()


def openai_like(rejected: list[str]) -> Any:
    """OpenAI's Responses API as the strict fake enforces it, scripted: run CMD, then answer."""
    seq = [0]

    def handle(got: Received) -> Answer | None:
        if not got.path.endswith("/responses"):
            return None
        try:
            req = validate(got.body, got.headers)
        except Rejected as exc:
            rejected.append(exc.message)
            return Answer(status=400, body=orjson.dumps({"error": {"message": exc.message, "param": exc.param,
                                                                   "type": "invalid_request_error"}}))
        seq[0] += 1
        items = req["input"] if isinstance(req["input"], list) else []
        output = _tool_output(items)
        resp = answer_for({**req, "tools": [t for t in req.get("tools", []) if t.get("name") == "exec_command"]},
                          seq[0])
        for item in resp["output"]:
            if item["type"] == "function_call":
                item["arguments"] = orjson.dumps({"cmd": CMD}).decode()
            if item["type"] == "message":
                item["content"][0]["text"] = f"Done: {output}"
        if output is not None:
            resp["output"] = [i for i in resp["output"] if i["type"] != "function_call"]
        return Answer(chunks=sse(stream_events(resp)), content_type="text/event-stream")

    return handle


def _frame(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_like(got: Received) -> Answer | None:
    """Anthropic's Messages API, scripted: a tool_use of exec_command running CMD, then an answer."""
    if not got.path.endswith("/v1/messages"):
        return None
    req = got.json()
    last = req["messages"][-1]
    results = [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"] \
        if isinstance(last["content"], list) else []
    start = {"type": "message_start", "message": {"id": "msg_codex", "type": "message", "role": "assistant",
                                                  "model": req["model"], "content": [], "stop_reason": None,
                                                  "stop_sequence": None,
                                                  "usage": {"input_tokens": 900, "output_tokens": 1}}}
    if results:
        content = results[-1].get("content")
        text = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content or [])
        block = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": f"Done: {text}"}
        stop = "end_turn"
    else:
        assert any(t["name"] == "exec_command" for t in req["tools"])
        block = {"type": "tool_use", "id": "toolu_codex1", "name": "exec_command", "input": {}}
        delta = {"type": "input_json_delta", "partial_json": orjson.dumps({"cmd": CMD}).decode()}
        stop = "tool_use"
    frames = [_frame("message_start", start),
              _frame("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
              _frame("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
              _frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
              _frame("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                       "usage": {"output_tokens": 20}}),
              _frame("message_stop", {"type": "message_stop"})]
    return Answer(chunks=frames, content_type="text/event-stream; charset=utf-8")


@pytest.mark.parametrize("model", ["gpt-5-5", "claude-sonnet-4-6"])
def test_codex_exec_runs_a_tool_and_answers_through_bytespike(gateway: Gateway, fake: FakeUpstream,
                                                               tmp_path: Path, model: str) -> None:
    acct = gateway.account()
    rejected: list[str] = []
    fake.handler = openai_like(rejected) if model == "gpt-5-5" else anthropic_like
    done = run_codex(gateway.url, acct["key"], PROMPT, model=model, cwd=tmp_path)
    assert done.returncode == 0, f"codex failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert (tmp_path / "marker.txt").read_text().strip() == "codex-ran-42"
    assert "Done:" in done.stdout and "codex-ran-42" in done.stdout
    assert rejected == []
    if model == "gpt-5-5":
        turns = [r.json() for r in fake.requests_to("/openai-responses/responses")]
        assert all(t["model"] == "gpt-5.5" and t["store"] is False and t["stream"] is True for t in turns)
        assert "codex-ran-42" in (_tool_output(turns[-1]["input"]) or "")
    else:
        turns = [r.json() for r in fake.requests_to("/anthropic/v1/messages")]
        last = turns[-1]["messages"]
        assert last[-2]["content"][-1]["type"] == "tool_use" and last[-2]["content"][-1]["input"] == {"cmd": CMD}
        assert last[-1]["content"][0]["tool_use_id"] == "toolu_codex1"
    assert len(turns) >= 2
    gateway.wait_settled(account_id=acct["account_id"], count=len(turns))
    rows = gateway.query("SELECT status, cost FROM usage_records WHERE account_id = ?", acct["account_id"])
    assert len(rows) == len(turns) and all(s == "succeeded" and c > 0 for s, c in rows)
