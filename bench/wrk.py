"""Throughput with wrk: a Lua script per target (POST body read from a file), results as JSON."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from payloads import Target

WRK = shutil.which("wrk") or "/usr/bin/wrk"
_MARK = "WRKJSON "

_LUA = """
local f = assert(io.open(%(body)s, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"mean_us":%%.1f,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def script(target: Target, workdir: Path) -> Path:
    """Write the target's body and a Lua script that sends it; returns the script's path."""
    body = Path(tempfile.mkstemp(prefix="body-", suffix=".json", dir=workdir)[1])
    body.write_bytes(target.body)
    headers = "\n".join(f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}" for k, v in target.headers)
    lua = Path(tempfile.mkstemp(prefix="wrk-", suffix=".lua", dir=workdir)[1])
    lua.write_text(_LUA % {"body": _lua_str(str(body)), "headers": headers, "mark": _MARK})
    return lua


def run(base_url: str, target: Target, workdir: Path, *, connections: int, seconds: int, threads: int = 1,
        preexec: Callable[[], None] | None = None) -> WrkResult:
    """Run wrk for ``seconds`` with ``connections`` keep-alive connections against one target."""
    lua = script(target, workdir)
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, seconds)}s", "--timeout", "10s", "-s", str(lua),
           base_url + target.path]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, preexec_fn=preexec)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith(_MARK)), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stdout[-2000:]} {res.stderr[-2000:]}")
    d = orjson.loads(line[len(_MARK):])
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    return WrkResult(d["requests"], d["duration_us"] / 1e6, errors, d["p50_us"] / 1000, d["p99_us"] / 1000)
