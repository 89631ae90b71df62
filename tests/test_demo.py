"""`bytespike serve --demo` on a fresh directory: a newcomer with no provider keys gets a working gateway."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import anthropic
import httpx
import pytest

from claude_code import claude_binary, run_claude
from conftest import free_port


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "GEMINI_", "BYTESPIKE_"))}
    out = open(d / "stdout.txt", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "bytespike", "serve", "--demo", "--port", str(port)], cwd=d,
                            env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    key = None
    while time.time() < deadline:
        text = (d / "stdout.txt").read_text()
        m = re.search(r"^export ANTHROPIC_API_KEY=(\S+)$", text, re.M)
        if m:
            try:
                if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                    key = m.group(1)
                    break
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    assert key, (d / "stdout.txt").read_text()
    yield {"url": url, "key": key, "stdout": (d / "stdout.txt").read_text(), "dir": d}
    proc.terminate()
    proc.wait(timeout=30)


def test_demo_prints_the_two_export_lines_and_says_it_is_a_demo(demo):  # type: ignore[no-untyped-def]
    out = demo["stdout"]
    assert f"export ANTHROPIC_BASE_URL={demo['url']}" in out
    assert "export ANTHROPIC_API_KEY=sk-byts-" in out
    assert "DEMO" in out and "5 USD" in out
    assert httpx.get(demo["url"] + "/healthz").json()["demo"] is True
    assert (demo["dir"] / "bytespike.db").exists()


def test_demo_answers_the_anthropic_sdk_for_every_model(demo):  # type: ignore[no-untyped-def]
    c = anthropic.Anthropic(base_url=demo["url"], api_key=demo["key"], max_retries=0)
    models = [m.id for m in c.models.list()]
    assert "claude-sonnet-4-6" in models and "gemini-3-1-pro" in models
    for model in ("claude-sonnet-4-6", "claude-3-5-haiku-20241022", "deepseek-v3-anthropic"):
        msg = c.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": "hi"}])
        assert msg.model == model
        assert "simulated" in msg.content[0].text
    with c.messages.stream(model="claude-opus-4-8", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        assert "demo" in s.get_final_text()
    assert any("(demo)" in (m.display_name or "") for m in c.models.list())


@pytest.mark.skipif(claude_binary() is None, reason="npm/node are needed to install Claude Code")
def test_demo_answers_claude_code(demo):  # type: ignore[no-untyped-def]
    done = run_claude(demo["url"], demo["key"], "say hi", model="claude-sonnet-4-6")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "simulated" in done.stdout
