"""Run the real Codex CLI (``codex exec``) against a ByteSpike gateway, for end-to-end tests.

The version is pinned in ``tests/e2e/package.json`` (``@openai/codex``, whose native binary is a
platform package on the npm registry); it is installed with ``npm ci`` on first use. Each run gets
a fresh CODEX_HOME holding the ``config.toml`` of ``docs/codex-cli.md``, as written there, with
only the gateway's address and the model put in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import orjson

from claude_code import E2E_DIR, _install_lock, _run

PACKAGE = "@openai/codex"
LAUNCHER = E2E_DIR / "node_modules" / "@openai" / "codex" / "bin" / "codex.js"
DOC = E2E_DIR.parent.parent / "docs" / "codex-cli.md"
DOC_URL = "http://127.0.0.1:8080"


def documented_config(base_url: str, model: str) -> str:
    """The ``~/.codex/config.toml`` block of docs/codex-cli.md for this gateway and model."""
    block = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    if block is None or DOC_URL not in block.group(1):
        raise AssertionError("docs/codex-cli.md has no config.toml block pointing at " + DOC_URL)
    text = block.group(1).replace(DOC_URL, base_url)
    return re.sub(r'^model = "[^"]*"', f'model = "{model}"', text, count=1, flags=re.M)


def pinned_version() -> str:
    return str(orjson.loads((E2E_DIR / "package.json").read_bytes())["dependencies"][PACKAGE])


def _installed_version() -> str | None:
    node = shutil.which("node")
    if node is None or not LAUNCHER.is_file():
        return None
    done = subprocess.run([node, str(LAUNCHER), "--version"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    words = done.stdout.split()
    return words[-1] if done.returncode == 0 and words else None


def codex_launcher() -> list[str] | None:
    """The argv prefix that runs the pinned Codex CLI, installing it first; None without npm/node."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        return None
    want = pinned_version()
    if _installed_version() != want:
        with _install_lock():
            if _installed_version() != want:
                subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=E2E_DIR, stdin=subprocess.DEVNULL,
                               timeout=900, check=True)
    got = _installed_version()
    if got != want:
        raise RuntimeError(f"installed Codex CLI reports {got!r}, package.json pins {want!r}")
    return [node, str(LAUNCHER)]


def run_codex(base_url: str, api_key: str, prompt: str, *, model: str, cwd: Path,
              timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``codex exec prompt`` with ByteSpike as its model provider; tools run without asking, in ``cwd``."""
    launcher = codex_launcher()
    if launcher is None:
        raise RuntimeError("npm and node are needed to install the Codex CLI")
    with tempfile.TemporaryDirectory(prefix="codex-run-") as scratch:
        home = Path(scratch)
        (home / "config.toml").write_text(documented_config(base_url, model))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
        env.update({"CODEX_HOME": str(home), "HOME": str(home), "BYTESPIKE_API_KEY": api_key, "NO_COLOR": "1",
                    "RUST_LOG": "error"})
        argv = [*launcher, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                "--color", "never", prompt]
        return _run(argv, cwd=cwd, env=env, timeout=timeout)
