"""Claude Code's own model choices through the gateway: its aliases, its default model, and the
gateway's model discovery (cross-vendor models it keeps under ``claude-via-`` ids)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import orjson
import pytest

from claude_code import capture_server, claude_binary, run_claude
from conftest import Gateway
from fakeupstream import FakeUpstream
from test_claude_code_gateway import anthropic_responder

cs = capture_server()
needs_claude = pytest.mark.skipif(claude_binary() is None, reason="npm/node are needed to install Claude Code")
FAMILIES = {"claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-fable-5"}


@needs_claude
@pytest.mark.parametrize("alias", ["sonnet", "opus", "haiku", None])
def test_claude_codes_aliases_and_default_model_are_served(gateway: Gateway, fake: FakeUpstream,
                                                            alias: str | None) -> None:
    acct = gateway.account(group="claude-default")
    fake.handler = anthropic_responder(cs.Responder(reply=f"answered for {alias or 'the default'}"))
    done = run_claude(gateway.url, acct["key"], "say hello", model=alias)
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == f"answered for {alias or 'the default'}"
    calls = fake.requests_to("/anthropic/v1/messages")
    assert calls and {c.json()["model"] for c in calls} <= FAMILIES
    if alias is not None:
        assert any(alias in c.json()["model"] for c in calls)
    session = calls[-1].headers.get("x-claude-code-session-id")
    assert session, "Claude Code sent no session id"
    rows = []
    for _ in range(100):
        rows = gateway.query("SELECT DISTINCT session_id FROM usage_records WHERE account_id = ?", acct["account_id"])
        if rows:
            break
        time.sleep(0.05)
    assert rows == [(session,)]


@needs_claude
def test_discovery_lists_the_keys_models_and_claude_via_ids(gateway: Gateway, fake: FakeUpstream) -> None:
    acct = gateway.account(group="multi-vendor")
    fake.handler = anthropic_responder(cs.Responder(reply="claude answered"))
    with tempfile.TemporaryDirectory(prefix="cc-home-") as home:
        env = {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}
        done = run_claude(gateway.url, acct["key"], "say hello", model="claude-haiku-4-5", extra_env=env,
                          home=Path(home))
        assert done.returncode == 0, done.stderr + done.stdout
        cached = list(Path(home).rglob("gateway-models.json"))
        assert cached, "Claude Code wrote no gateway-models.json"
        listed = orjson.dumps(orjson.loads(cached[0].read_bytes())).decode()
        assert "claude-via-gpt-5-5" in listed and "claude-sonnet-4-6" in listed
        fake.received.clear()
        done = run_claude(gateway.url, acct["key"], "say hello", model="claude-via-gpt-5-5", extra_env=env,
                          home=Path(home))
    assert done.returncode == 0, done.stderr + done.stdout
    assert fake.requests_to("/openai-responses/responses"), "the gpt-5-5 route was not used"
    assert all(c.json()["model"] == "gpt-5.5" for c in fake.requests_to("/openai-responses/responses"))
