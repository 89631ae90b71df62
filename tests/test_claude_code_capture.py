"""Captured Claude Code traffic stays meaningful, the capture server speaks Anthropic, and the
harness drives a real ``claude -p`` tool loop against it."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from bytespike.protocols.sse import SSEParser
from claude_code import capture_server, claude_binary, pinned_version, run_claude

DATA = Path(__file__).resolve().parent / "data" / "claude_code"
CORE_TOOLS = {"Bash", "Read", "Edit", "Write", "Agent", "ToolSearch"}
cs = capture_server()


def capture(name: str) -> dict[str, Any]:
    return orjson.loads((DATA / f"{name}.json").read_bytes())


def betas(record: dict[str, Any]) -> list[str]:
    return record["headers"]["anthropic-beta"].split(",")


# --- the captured data --------------------------------------------------------------------------


def test_main_request_declares_many_tools_each_with_a_schema() -> None:
    body = capture("sonnet-4-6.messages")["body"]
    names = [t["name"] for t in body["tools"]]
    assert len(names) >= 10
    assert CORE_TOOLS <= set(names)
    assert all(t["description"] and t["input_schema"]["type"] == "object" for t in body["tools"])
    assert len(orjson.dumps(body["tools"])) > 40_000


def test_main_request_is_a_streamed_beta_call_with_claude_code_headers() -> None:
    record = capture("sonnet-4-6.messages")
    assert (record["method"], record["path"]) == ("POST", "/v1/messages?beta=true")
    assert record["body"]["stream"] is True
    assert "claude-code-20250219" in betas(record)
    assert record["headers"]["anthropic-version"] == "2023-06-01"
    assert record["headers"]["user-agent"].startswith(f"claude-cli/{pinned_version()} ")
    assert record["headers"]["x-app"] == "cli"


def test_sonnet_4_6_sends_adaptive_thinking_context_management_and_effort() -> None:
    record = capture("sonnet-4-6.messages")
    body = record["body"]
    assert body["thinking"]["type"] == "adaptive"
    assert body["context_management"]["edits"][0]["type"] == "clear_thinking_20251015"
    assert body["output_config"] == {"effort": "high"}
    assert {"context-management-2025-06-27", "effort-2025-11-24"} <= set(betas(record))
    assert [b.get("cache_control") for b in body["system"]][1:] == [{"type": "ephemeral"}] * 2


def test_haiku_sends_budgeted_thinking_and_no_effort() -> None:
    body = capture("haiku-4-5.messages")["body"]
    assert body["thinking"]["type"] == "enabled"
    assert body["thinking"]["budget_tokens"] < body["max_tokens"]
    assert "output_config" not in body


def test_default_model_puts_a_system_turn_with_its_own_effort_in_messages() -> None:
    record = capture("default-model.messages")
    system_turns = [m for m in record["body"]["messages"] if m["role"] == "system"]
    assert system_turns and "output_config" in system_turns[0]
    assert "per-turn-control-2026-07-01" in betas(record)


def test_forced_mid_conversation_system_turns_survive_into_history() -> None:
    record = capture("sonnet-4-6.mid-conversation-system.second-turn.messages")
    roles = [m["role"] for m in record["body"]["messages"]]
    assert roles == ["user", "system", "assistant", "user", "system"]
    assert record["capture"]["runs"][-1]["env"] == {"CLAUDE_CODE_FORCE_MID_CONVERSATION_SYSTEM": "1"}


def test_tool_result_capture_answers_the_tool_use_it_follows() -> None:
    messages = capture("sonnet-4-6.tool-result.messages")["body"]["messages"]
    (use,) = messages[-2]["content"]
    (result,) = messages[-1]["content"]
    assert (use["type"], use["name"]) == ("tool_use", "Bash")
    assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"]
    assert result["content"].startswith("bytespike-tool-ran\n") and result["is_error"] is False


def test_count_tokens_capture_carries_only_model_messages_and_tools() -> None:
    record = capture("sonnet-4-6.tool-search-auto.count_tokens")
    assert record["path"] == "/v1/messages/count_tokens?beta=true"
    assert set(record["body"]) == {"model", "messages", "tools"}
    assert "token-counting-2024-11-01" in betas(record)


def test_api_hello_probe_is_a_bodiless_head() -> None:
    record = capture("startup.api-hello")
    assert (record["method"], record["path"], record["body"]) == ("HEAD", "/api/hello", None)


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.stem)
def test_every_capture_is_of_the_pinned_version_with_the_key_redacted(path: Path) -> None:
    record = orjson.loads(path.read_bytes())
    assert record["capture"]["claude_code_version"] == pinned_version()
    assert record["headers"].get("x-api-key", "sk-test") == "sk-test"
    assert "authorization" not in record["headers"]


# --- the capture server -------------------------------------------------------------------------


def post(url: str, body: dict[str, Any], key: str = "sk-secret") -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), headers={"content-type": "application/json", "x-api-key": key}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_capture_server_streams_a_complete_anthropic_message(tmp_path: Path) -> None:
    with cs.CaptureServer(tmp_path) as server:
        status, raw = post(
            f"{server.base_url}/v1/messages?beta=true", {"model": "m", "stream": True, "messages": []}
        )
    parser = SSEParser()
    events = parser.feed(raw) + parser.close()
    assert status == 200
    assert [e.event for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[3].json()["delta"] == {"type": "text_delta", "text": "ok"}
    assert events[5].json()["delta"]["stop_reason"] == "end_turn"
    assert events[5].json()["usage"]["output_tokens"] >= 1


def test_capture_server_logs_requests_with_the_key_redacted(tmp_path: Path) -> None:
    with cs.CaptureServer(tmp_path) as server:
        post(f"{server.base_url}/v1/messages", {"model": "m", "messages": [{"role": "user", "content": "x"}]})
        records = server.records()
    assert records[0]["path"] == "/v1/messages"
    assert records[0]["headers"]["x-api-key"] == "sk-test"
    assert records[0]["body"]["messages"][0]["content"] == "x"


def test_capture_server_answers_tool_use_until_a_tool_result_arrives(tmp_path: Path) -> None:
    responder = cs.Responder(reply="fin", tool_name="Read", tool_input={"file_path": "/x"})
    request = {"model": "m", "tools": [{"name": "Read"}], "messages": [{"role": "user", "content": "go"}]}
    with cs.CaptureServer(tmp_path, responder) as server:
        _, first = post(f"{server.base_url}/v1/messages", request)
        done = {
            **request,
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}],
        }
        _, second = post(f"{server.base_url}/v1/messages", done)
        _, side = post(f"{server.base_url}/v1/messages", {"model": "m", "messages": []})
    assert orjson.loads(first)["stop_reason"] == "tool_use"
    assert orjson.loads(first)["content"][0]["input"] == {"file_path": "/x"}
    assert orjson.loads(second)["content"] == [{"type": "text", "text": "fin"}]
    assert orjson.loads(side)["stop_reason"] == "end_turn"


def test_capture_server_counts_tokens_and_404s_unknown_paths(tmp_path: Path) -> None:
    with cs.CaptureServer(tmp_path) as server:
        counted = post(f"{server.base_url}/v1/messages/count_tokens", {"model": "m", "messages": []})
        missing = post(f"{server.base_url}/v1/models/nope", {})
    assert counted[0] == 200 and orjson.loads(counted[1])["input_tokens"] > 0
    assert missing[0] == 404
    assert orjson.loads(missing[1])["error"]["type"] == "not_found_error"


# --- real Claude Code through the harness ------------------------------------------------------

needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is needed to install Claude Code")


@pytest.fixture(scope="module")
def claude() -> Path:
    binary = claude_binary()
    assert binary is not None
    return binary


def tool_results(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        block
        for r in records
        if r["path"].startswith("/v1/messages?")
        for block in r["body"]["messages"][-1]["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]


@needs_npm
def test_claude_runs_bash_from_a_tool_use_and_prints_the_final_answer(claude: Path, tmp_path: Path) -> None:
    marker = {"command": "echo bytespike-tool-ran", "description": "Print a marker"}
    responder = cs.Responder(reply="final answer from fake upstream", tool_name="Bash", tool_input=marker)
    with cs.CaptureServer(tmp_path / "log", responder) as server:
        done = run_claude(
            server.base_url, "sk-test", "run the marker", model="claude-sonnet-4-6", allowed_tools=["Bash"]
        )
        records = server.records()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "final answer from fake upstream"
    (result,) = tool_results(records)
    assert "bytespike-tool-ran" in result["content"] and not result["is_error"]


@needs_npm
def test_claude_reads_a_file_in_its_cwd_through_the_read_tool(claude: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "note.txt").write_text("the ByteSpike note\n")
    responder = cs.Responder(
        reply="read it", tool_name="Read", tool_input={"file_path": str(project / "note.txt")}
    )
    with cs.CaptureServer(tmp_path / "log", responder) as server:
        done = run_claude(server.base_url, "sk-test", "read note.txt", model="claude-sonnet-4-6", cwd=project)
        records = server.records()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "read it"
    (result,) = tool_results(records)
    text = (
        result["content"] if isinstance(result["content"], str) else orjson.dumps(result["content"]).decode()
    )
    assert "the ByteSpike note" in text


@needs_npm
def test_harness_run_makes_only_the_messages_call(claude: Path, tmp_path: Path) -> None:
    with cs.CaptureServer(tmp_path / "log") as server:
        done = run_claude(server.base_url, "sk-test", "say hi", model="claude-haiku-4-5")
        records = server.records()
    assert done.stdout.strip() == "ok"
    assert [(r["method"], r["path"]) for r in records] == [("POST", "/v1/messages?beta=true")]
    assert records[0]["body"]["model"] == "claude-haiku-4-5"
