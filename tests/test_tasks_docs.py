"""The examples in docs/tasks.md and the README's task section, run as written against a gateway."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import ROOT, Gateway
from fakeupstream import FakeUpstream
from tasks_support import WebhookReceiver, haiku, submit, task_gateway

_BLOCK = re.compile(r"<!-- test: (\S+) -->\n```(\w+)\n(.*?)```", re.S)


def examples(path: Path) -> dict[str, tuple[str, str]]:
    return {m.group(1): (m.group(2), m.group(3)) for m in _BLOCK.finditer(path.read_text())}


GUIDE = examples(ROOT / "docs" / "tasks.md")
README = examples(ROOT / "README.md")


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = task_gateway(fake.url, tmp_path_factory.mktemp("docs")).start()
    yield g
    g.stop()


def run_example(gw: Gateway, lang: str, code: str) -> str:
    acct = gw.account(usd="10")
    env = {**os.environ, "BYTESPIKE_URL": gw.url, "BYTESPIKE_KEY": acct["key"]}
    cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    return res.stdout


def test_the_guide_and_readme_have_their_tested_examples() -> None:
    assert set(GUIDE) == {"curl", "python", "verify"}
    assert set(README) == {"readme-curl"}


def test_the_guides_curl_example_submits_polls_and_prints_the_answer(gw: Gateway) -> None:
    out = run_example(gw, *GUIDE["curl"]).splitlines()
    assert out[0].startswith("submitted task_")
    assert out[1] == "succeeded"
    assert "simulated reply" in out[2] and float(out[2].rsplit(" ", 1)[1]) > 0


def test_the_guides_python_example_runs_three_tasks_to_their_answers(gw: Gateway) -> None:
    out = run_example(gw, *GUIDE["python"]).splitlines()
    assert len(out) == 3 and all(line.startswith("succeeded ") and "USD)" in line for line in out)
    assert {line.split(" -> ")[0].removeprefix("succeeded ") for line in out} == {
        "What is 2 + 2?", "Name a prime above 10.", "Spell 'queue' backwards."}


def test_the_readme_curl_example_ends_with_the_succeeded_task(gw: Gateway) -> None:
    out = run_example(gw, *README["readme-curl"])
    task = json.loads(out)
    assert task["status"] == "succeeded" and task["result"]["type"] == "message"


def test_the_guides_verify_function_accepts_a_real_delivery_and_rejects_a_tampered_one(gw: Gateway) -> None:
    scope: dict[str, Any] = {}
    exec(GUIDE["verify"][1], scope)  # noqa: S102 - the documented receiver code, as written
    verify = scope["verify"]
    receiver = WebhookReceiver().start()
    try:
        acct = gw.account(usd="10")
        secret = json.loads(gw.cli("webhooks", "secret", acct["email"], "--json").stdout)["secret"]
        submit(gw, acct["key"], haiku(), webhook_url=receiver.url)
        headers, body, _ = receiver.wait(1)[0]
    finally:
        receiver.stop()
    assert verify(secret, body, headers["bytespike-signature"])
    assert orjson.loads(body)["status"] == "succeeded"
    assert not verify(secret, body.replace(b"succeeded", b"failed"), headers["bytespike-signature"])
    assert not verify(secret, body, headers["bytespike-signature"], tolerance=-1)
