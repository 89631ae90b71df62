"""The bench command runs end to end in its quick mode and prints every figure; no timing is judged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent

ROUTE_LABELS = [
    "/v1/messages claude (non-stream)",
    "/v1/messages claude (stream)",
    "/v1/messages gpt-5-5 via OpenAI Responses (non-stream)",
    "/v1/messages gpt-5-5 via OpenAI Responses (stream)",
    "/v1/messages gemini-3-1-pro via Gemini (non-stream)",
    "/v1/messages gemini-3-1-pro via Gemini (stream)",
    "/v1/chat/completions claude (non-stream)",
    "/v1/chat/completions claude (stream)",
    "/v1/responses gpt-5-5, native (non-stream)",
    "/v1/responses gpt-5-5, native (stream)",
    "/v1/responses claude (non-stream)",
    "/v1/responses claude (stream)",
]
SECTION_TITLES = [
    "Added latency, milliseconds (gateway minus direct call to the same upstream)",
    "Throughput, requests/s (wrk, keep-alive connections)",
    "Billing on vs off: /v1/messages claude (non-stream)",
    "Tasks: /v1/tasks vs the same /v1/messages claude (non-stream) requests, c16",
    "Server: uvicorn vs granian",
]
HEADER_LINES = ["date:", "machine:", "python:", "placement:", "load avg:"]


def test_quick_bench_exits_cleanly_and_prints_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--requests", "200", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert res.returncode == 0, f"bench failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    text = res.stdout
    sys.stdout.write(text)  # shown with pytest -s: the figures of this run

    for line in HEADER_LINES + SECTION_TITLES + ROUTE_LABELS:
        assert line in text, f"missing from the bench output: {line!r}"
    for column in ("added p50", "added p99", "ratio p50", "added TTFB p50", "gateway/direct"):
        assert column in text
    for conc in ("c16", "c64"):
        assert f"/v1/messages claude (non-stream)   {conc}" in text

    result = orjson.loads(out.read_bytes())
    assert [r["label"] for r in result["latency"]] == ROUTE_LABELS
    assert all(r["samples"] > 0 and r["errors"] == 0 for r in result["latency"])
    assert {(r["route"], r["concurrency"]) for r in result["throughput"]} == {
        (route, c) for route in ("native-json", "native-stream") for c in (16, 64)}
    assert all(r["gateway"]["requests"] > 0 and r["gateway"]["errors"] == 0 for r in result["throughput"])
    assert result["problems"] == []

    tasks = result["tasks"]
    assert tasks["errors"] == 0 and tasks["tasks"] >= 200 and tasks["tasks_per_s"] > 0
    assert "added gateway CPU per task, ms" in text

    billing = result["billing"]
    if billing["available"]:
        for label in ("added latency p50, ms", "added latency p99, ms", "throughput c16, rps"):
            assert label in text
    else:
        assert f"not available: {billing['reason']}" in text


def test_soak_prints_memory_at_every_tenth(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--soak", "100", "--soak-concurrency", "4"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert res.returncode == 0, f"soak failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    assert "Soak: gateway resident memory (VmRSS, whole process tree)" in res.stdout
    for stage in ("before (started, idle)", *(f"{p}%" for p in range(10, 101, 10)), "after (idle 2 s)"):
        assert stage in res.stdout, f"missing soak stage {stage!r}"
    assert "100 requests at concurrency 4" in res.stdout
    assert "errors: 0" in res.stdout
