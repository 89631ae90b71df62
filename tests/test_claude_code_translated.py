"""Claude Code itself through translated models: the gateway turns its Messages requests into
Gemini and OpenAI Chat calls, the fake upstream answers in those formats with a ``Bash`` call and
then text, Claude Code runs the tool and prints the final answer."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bytespike.protocols.gemini.schema import GEMINI_SCHEMA_KEYWORDS
from claude_code import claude_binary, run_claude
from conftest import Gateway
from fakeupstream import FakeUpstream, Received
from test_translated_e2e import GEMINI_PATH, SIG_CALL, tool_responder

needs_claude = pytest.mark.skipif(
    claude_binary() is None, reason="npm/node are needed to install Claude Code"
)
MARKER = {"command": "echo bytespike-tool-ran", "description": "Print a marker"}


def chat_turns(received: list[Received]) -> list[dict[str, Any]]:
    return [r.json() for r in received if r.path == "/openai/chat/completions"]


def gemini_turns(received: list[Received]) -> list[dict[str, Any]]:
    return [r.json() for r in received if r.path.startswith(GEMINI_PATH) and "GenerateContent" in r.path]


def schema_keywords(node: Any) -> set[str]:
    """Every keyword used anywhere in a schema (property names excluded)."""
    if not isinstance(node, dict):
        return set()
    out = set(node)
    for name, value in node.items():
        if name == "properties":
            for sub in value.values():
                out |= schema_keywords(sub)
        elif name == "items":
            out |= schema_keywords(value)
        elif name == "anyOf":
            for sub in value:
                out |= schema_keywords(sub)
    return out


@needs_claude
def test_claude_code_runs_a_tool_loop_through_gemini(gateway: Gateway, fake: FakeUpstream) -> None:
    acct = gateway.account()
    fake.handler = tool_responder(
        "Bash", MARKER, "final answer through gemini", reasoning="I will run it.", tail_signature=True
    )
    done = run_claude(
        gateway.url, acct["key"], "run the marker", model="gemini-3-1-pro", allowed_tools=["Bash"]
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == "final answer through gemini"

    turns = gemini_turns(fake.received)
    answered = [t for t in turns if any("functionResponse" in p for p in t["contents"][-1]["parts"])]
    assert answered, "no request carried the tool result back to Gemini"
    contents = answered[-1]["contents"]
    call_part = next(p for p in contents[-2]["parts"] if "functionCall" in p)
    assert contents[-2]["role"] == "model"
    assert call_part["functionCall"]["name"] == "Bash" and call_part["functionCall"]["args"] == MARKER
    assert call_part["thoughtSignature"] == SIG_CALL
    (response,) = [p["functionResponse"] for p in contents[-1]["parts"] if "functionResponse" in p]
    assert response["name"] == "Bash" and response["id"] == call_part["functionCall"]["id"]
    assert "bytespike-tool-ran" in response["response"]["output"]
    assert all("x-anthropic-billing-header" not in orjson.dumps(t).decode() for t in turns)
    declarations = [d for t in turns for tool in t.get("tools") or () for d in tool["functionDeclarations"]]
    assert any(d["name"] == "Bash" for d in declarations)
    for d in declarations:
        assert schema_keywords(d.get("parameters")) <= GEMINI_SCHEMA_KEYWORDS, d["name"]


@needs_claude
def test_claude_code_runs_a_tool_loop_through_gpt(gateway: Gateway, fake: FakeUpstream) -> None:
    acct = gateway.account()
    fake.handler = tool_responder("Bash", MARKER, "final answer through gpt")
    done = run_claude(gateway.url, acct["key"], "run the marker", model="gpt-5-5-chat", allowed_tools=["Bash"])
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == "final answer through gpt"

    turns = chat_turns(fake.received)
    answered = [t for t in turns if any(m["role"] == "tool" for m in t["messages"])]
    assert answered, "no request carried the tool result back to OpenAI"
    messages = answered[-1]["messages"]
    (assistant,) = [m for m in messages if m.get("tool_calls")]
    (call,) = assistant["tool_calls"]
    assert call["function"]["name"] == "Bash"
    (tool,) = [m for m in messages if m["role"] == "tool"]
    assert tool["tool_call_id"] == call["id"] and "bytespike-tool-ran" in tool["content"]
    assert all(t["model"] == "gpt-5.5" for t in turns)
    assert all("x-anthropic-billing-header" not in orjson.dumps(t).decode() for t in turns)


@needs_claude
def test_claude_code_keeps_deepseek_reasoning_through_a_tool_loop(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    """DeepSeek in thinking mode wants each tool-calling turn's reasoning_content back: it travels
    through Claude Code as a thinking block and returns on the assistant message."""
    acct = gateway.account()
    reasoning = "The user wants the marker; run it with Bash."
    fake.handler = tool_responder("Bash", MARKER, "final answer through deepseek", reasoning=reasoning)
    done = run_claude(
        gateway.url, acct["key"], "run the marker", model="deepseek-v4-pro", allowed_tools=["Bash"]
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == "final answer through deepseek"

    turns = [r.json() for r in fake.received if r.path == "/deepseek/chat/completions"]
    answered = [t for t in turns if any(m["role"] == "tool" for m in t["messages"])]
    assert answered and all(t["thinking"] == {"type": "enabled"} for t in turns)
    (assistant,) = [m for m in answered[-1]["messages"] if m.get("tool_calls")]
    assert assistant["reasoning_content"] == reasoning
    assert assistant["tool_calls"][0]["function"]["name"] == "Bash"
