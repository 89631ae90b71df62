"""Claude Code itself, through the gateway, against a fake Anthropic upstream: a whole tool loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from claude_code import capture_server, claude_binary, run_claude
from conftest import Gateway
from fakeupstream import Answer, FakeUpstream, Received

cs = capture_server()
needs_claude = pytest.mark.skipif(claude_binary() is None, reason="npm/node are needed to install Claude Code")


def anthropic_responder(responder: Any) -> Any:
    """A fake-upstream handler answering Messages calls the way the capture server does."""
    calls = iter(range(1, 10_000))

    def handle(req: Received) -> Answer | None:
        if not req.path.endswith("/v1/messages"):
            return None
        body = req.json()
        n = next(calls)
        msg = cs.message_json(body, responder.content(body, n), n, cs.estimate_tokens(req.body))
        if body.get("stream"):
            return Answer(chunks=list(cs.message_sse(msg)), content_type="text/event-stream; charset=utf-8")
        return Answer(body=orjson.dumps(msg))

    return handle


def tool_results(received: list[Received]) -> list[dict[str, Any]]:
    out = []
    for r in received:
        if r.path.endswith("/v1/messages"):
            last = r.json()["messages"][-1]
            if isinstance(last.get("content"), list):
                out += [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
    return out


@needs_claude
def test_claude_code_runs_a_tool_loop_through_the_gateway(gateway: Gateway, fake: FakeUpstream, tmp_path: Path):
    acct = gateway.account(group="claude-default")
    marker = {"command": "echo bytespike-tool-ran", "description": "Print a marker"}
    fake.handler = anthropic_responder(cs.Responder(reply="final answer through the gateway", tool_name="Bash",
                                                    tool_input=marker))
    done = run_claude(gateway.url, acct["key"], "run the marker", model="claude-sonnet-4-6", allowed_tools=["Bash"])
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == "final answer through the gateway"
    (result,) = tool_results(fake.received)
    content = result["content"] if isinstance(result["content"], str) else orjson.dumps(result["content"]).decode()
    assert "bytespike-tool-ran" in content
    calls = fake.requests_to("/anthropic/v1/messages")
    assert len(calls) >= 2
    assert all(c.json()["model"] == "claude-sonnet-4-6" for c in calls)
    assert all(c.headers["x-api-key"] == "upstream-secret-anthropic" for c in calls)
    gateway.wait_settled(account_id=acct["account_id"], count=len(calls))
    billed = gateway.query("SELECT COUNT(*), SUM(cost) FROM usage_records WHERE account_id = ? AND status = "
                           "'succeeded'", acct["account_id"])[0]
    assert billed[0] == len(calls) and billed[1] > 0


@needs_claude
def test_claude_code_with_an_old_model_id_is_served_by_the_current_model(gateway: Gateway, fake: FakeUpstream):
    acct = gateway.account(group="claude-default")
    fake.handler = anthropic_responder(cs.Responder(reply="alias ok"))
    done = run_claude(gateway.url, acct["key"], "hello", model="claude-3-5-sonnet-20241022")
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == "alias ok"
    assert {c.json()["model"] for c in fake.requests_to("/anthropic/v1/messages")} == {"claude-sonnet-4-6"}
