"""Run the real Gemini CLI (``gemini -p``) against any base URL, for end-to-end tests.

The CLI version is pinned in ``tests/e2e/gemini-cli/package.json``; it is installed with ``npm
ci`` on first use. Each run gets a fresh home (``GEMINI_CLI_HOME`` with a settings file choosing
API-key auth), an empty trusted project dir, no stdin and no TTY.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

CLI_DIR = Path(__file__).resolve().parent / "e2e" / "gemini-cli"
PACKAGE_NAME = "@google/gemini-cli"
PACKAGE_DIR = CLI_DIR / "node_modules" / "@google" / "gemini-cli"
ENTRY = PACKAGE_DIR / "bundle" / "gemini.js"
INSTALL_TIMEOUT = 900.0
SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}}, "general": {"disableAutoUpdate": True},
            "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False}}

# Variables that would point the CLI at another account, project or config.
_DROPPED_PREFIXES = ("GEMINI_", "GOOGLE_", "CLOUDSDK_")


def pinned_version() -> str:
    manifest = orjson.loads((CLI_DIR / "package.json").read_bytes())
    return str(manifest["dependencies"][PACKAGE_NAME])


def _installed_version() -> str | None:
    try:
        return str(orjson.loads((PACKAGE_DIR / "package.json").read_bytes())["version"]) if ENTRY.is_file() else None
    except (OSError, orjson.JSONDecodeError, KeyError):
        return None


@contextmanager
def _install_lock() -> Iterator[None]:
    """Serialise installs between concurrent test processes sharing one work tree."""
    tag = hashlib.sha256(str(CLI_DIR).encode()).hexdigest()[:16]
    with (Path(tempfile.gettempdir()) / f"bytespike-gemini-cli-{tag}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def gemini_entry() -> Path | None:
    """The pinned CLI's entry script, installing it on first use; None when node or npm is missing."""
    want = pinned_version()
    if _installed_version() == want:
        return ENTRY
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        return None
    with _install_lock():
        if _installed_version() != want:
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLI_DIR, stdin=subprocess.DEVNULL,
                           timeout=INSTALL_TIMEOUT, check=True)
    got = _installed_version()
    if got != want:
        raise RuntimeError(f"installed Gemini CLI is {got!r}, package.json pins {want!r}")
    return ENTRY


@dataclass
class GeminiRun:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        """The ``--output-format json`` document (the CLI prints it last on stdout)."""
        start = self.stdout.find("{")
        return dict(orjson.loads(self.stdout[start:]))


def run_gemini(base_url: str, api_key: str, prompt: str, *, model: str, workdir: Path, timeout: float = 180,
               extra_env: Mapping[str, str] | None = None) -> GeminiRun:
    """``gemini -m MODEL -p PROMPT --output-format json --approval-mode yolo`` against ``base_url``."""
    entry = gemini_entry()
    node = shutil.which("node")
    if entry is None or node is None:
        raise RuntimeError("node and npm are needed to run the Gemini CLI")
    home, project = workdir / "home", workdir / "project"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    project.mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_bytes(orjson.dumps(SETTINGS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    env.update({"HOME": str(home), "GEMINI_CLI_HOME": str(home), "GOOGLE_GEMINI_BASE_URL": base_url,
                "GEMINI_API_KEY": api_key, "GEMINI_CLI_TRUST_WORKSPACE": "true", "NO_COLOR": "1",
                "CI": "true", **(extra_env or {})})
    argv = [node, str(entry), "-m", model, "-p", prompt, "--output-format", "json", "--approval-mode", "yolo"]
    proc = subprocess.Popen(argv, cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return GeminiRun(proc.returncode, out, err)
