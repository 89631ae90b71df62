"""Run the real Claude Code CLI (``claude -p``) against any base URL, for end-to-end tests.

The CLI version is pinned in ``tests/e2e/package.json``; it is installed with ``npm ci`` on first
use. Each run gets a fresh HOME, no stdin and no TTY, so it behaves the same for a developer and
for CI running as root.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import orjson

E2E_DIR = Path(__file__).resolve().parent / "e2e"
PACKAGE_NAME = "@anthropic-ai/claude-code"
PACKAGE_DIR = E2E_DIR / "node_modules" / "@anthropic-ai" / "claude-code"
EXECUTABLE = PACKAGE_DIR / "bin" / "claude.exe"
INSTALL_TIMEOUT = 900.0

# Variables that would point the CLI at another account, provider or config dir.
_DROPPED_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "AWS_BEARER_TOKEN_BEDROCK")
_DROPPED_NAMES = {"CLAUDECODE", "IS_SANDBOX", "MAX_THINKING_TOKENS", "ENABLE_TOOL_SEARCH"}

# Quiet, offline, non-interactive: no telemetry, update checks, error reports or side traffic.
BASE_ENV = {
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "NO_COLOR": "1",
}


def pinned_version() -> str:
    """The exact Claude Code version ``tests/e2e/package.json`` depends on."""
    manifest = orjson.loads((E2E_DIR / "package.json").read_bytes())
    return str(manifest["dependencies"][PACKAGE_NAME])


def _installed_version(executable: Path) -> str | None:
    """The version the executable reports; None when it is absent or still the npm placeholder."""
    if not executable.is_file() or not os.access(executable, os.X_OK):
        return None
    try:
        done = subprocess.run(
            [str(executable), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=_child_env({}),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.split()
    return words[0] if done.returncode == 0 and words else None


@contextmanager
def _install_lock() -> Iterator[None]:
    """Serialise installs between concurrent test processes sharing one work tree."""
    tag = hashlib.sha256(str(E2E_DIR).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"bytespike-claude-code-{tag}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claude_binary() -> Path | None:
    """The pinned Claude Code executable, installing it on first use; None when npm is missing.

    ``npm ci`` installs the package and its native platform package; ``install.cjs`` (the
    package's postinstall, run again in case npm skipped install scripts) puts the native
    binary in place of the placeholder.
    """
    want = pinned_version()
    if _installed_version(EXECUTABLE) == want:
        return EXECUTABLE
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        return None
    with _install_lock():
        if _installed_version(EXECUTABLE) != want:
            _install_step([npm, "ci", "--no-audit", "--no-fund"], E2E_DIR)
            if _installed_version(EXECUTABLE) != want:
                _install_step([node, "install.cjs"], PACKAGE_DIR)
    got = _installed_version(EXECUTABLE)
    if got != want:
        raise RuntimeError(f"installed Claude Code reports {got!r}, package.json pins {want!r}")
    return EXECUTABLE


def _install_step(argv: list[str], cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, timeout=INSTALL_TIMEOUT, check=True)


def _child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES) and k not in _DROPPED_NAMES
    }
    env.update(BASE_ENV)
    env.update(overrides)
    return env


def claude_command(
    executable: Path,
    prompt: str,
    *,
    model: str | None = None,
    allowed_tools: Sequence[str] = (),
    args: Sequence[str] = (),
) -> list[str]:
    """The argv of one headless run: print mode, optional model, pre-approved tools."""
    argv = [str(executable), "-p", prompt]
    if model is not None:
        argv += ["--model", model]
    if allowed_tools:
        argv += ["--allowedTools", ",".join(allowed_tools)]
    return argv + list(args)


def run_claude(
    base_url: str,
    api_key: str,
    prompt: str,
    *,
    model: str | None = None,
    allowed_tools: Sequence[str] = (),
    cwd: Path | None = None,
    timeout: float = 120,
    extra_env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    home: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``claude -p prompt`` against ``base_url`` and return its exit code, stdout and stderr.

    HOME is a fresh temporary directory unless ``home`` is given (reuse one to ``--continue`` a
    conversation); ``cwd`` defaults to an empty project directory. Tools in ``allowed_tools``
    run without asking (``--allowedTools``); ``--dangerously-skip-permissions`` is refused as
    root, so it is not used. On timeout the whole process group is killed and
    ``subprocess.TimeoutExpired`` is raised. Raises ``RuntimeError`` when npm is unavailable.
    """
    executable = claude_binary()
    if executable is None:
        raise RuntimeError("npm and node are needed to install Claude Code")
    argv = claude_command(executable, prompt, model=model, allowed_tools=allowed_tools, args=args)
    with tempfile.TemporaryDirectory(prefix="claude-code-run-") as scratch:
        run_home = home if home is not None else Path(scratch) / "home"
        run_cwd = cwd if cwd is not None else Path(scratch) / "project"
        run_home.mkdir(parents=True, exist_ok=True)
        run_cwd.mkdir(parents=True, exist_ok=True)
        env = _child_env(
            {
                "HOME": str(run_home),
                "ANTHROPIC_BASE_URL": base_url,
                "ANTHROPIC_API_KEY": api_key,
                **(extra_env or {}),
            }
        )
        return _run(argv, cwd=run_cwd, env=env, timeout=timeout)


def _run(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Like ``subprocess.run`` but a timeout also kills the tools the CLI started."""
    with subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, output=stdout, stderr=stderr) from None
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def capture_server() -> ModuleType:
    """The logging fake Anthropic API of ``tests/e2e/capture_server.py`` as a module."""
    name = "bytespike_e2e_capture_server"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, E2E_DIR / "capture_server.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {E2E_DIR / 'capture_server.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
