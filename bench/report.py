"""Render a bench result (plain dicts, the same that --json writes) as readable text tables."""

from __future__ import annotations

import math
from typing import Any


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-align the first column, right-align the rest."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def ms(x: float | None, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def times(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1f}x"


def num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}%"


def header(meta: dict[str, Any]) -> str:
    lines = [
        "ByteSpike bench",
        f"date:      {meta['date']}",
        f"machine:   {meta['cpu']}, {meta['cores']} cores ({meta['kernel']})",
        f"python:    {meta['python']}",
        f"gateway:   bytespike {meta['commit']}, {meta['gateway_workers']} worker(s); {meta['versions']}",
        f"placement: {meta['placement']}",
        f"load avg:  {meta['load_before']} at start, {meta['load_after']} at end (other work on the machine "
        "shows here)",
        f"settings:  {meta['settings']}",
    ]
    return "\n".join(lines)


def latency_section(rows: list[dict[str, Any]]) -> str:
    head = ["route (concurrency 1)", "n", "direct p50", "p99", "gateway p50", "p99", "added p50", "added p99",
            "ratio p50", "added TTFB p50", "errors"]
    body = [[r["label"], str(r["samples"]), ms(r["direct"]["p50"]), ms(r["direct"]["p99"]), ms(r["gateway"]["p50"]),
             ms(r["gateway"]["p99"]), ms(r["added"]["p50"], True), ms(r["added"]["p99"], True), times(r["ratio_p50"]),
             ms(r["added"]["ttfb_p50"], True) if r["stream"] else "-", str(r["errors"])] for r in rows]
    return "Added latency, milliseconds (gateway minus direct call to the same upstream)\n" + table(head, body)


def throughput_section(rows: list[dict[str, Any]]) -> str:
    head = ["route", "conc", "direct rps", "gateway rps", "gateway/direct", "gw p50 ms", "gw p99 ms",
            "gateway CPU", "upstream CPU", "errors"]
    body = [[r["label"], f"c{r['concurrency']}", num(r["direct"]["rps"]), num(r["gateway"]["rps"]),
             f"{r['ratio']:.3f}", ms(r["gateway"]["p50"]), ms(r["gateway"]["p99"]), pct(r["gateway_cpu"]),
             pct(r["upstream_cpu"]), str(r["direct"]["errors"] + r["gateway"]["errors"])] for r in rows]
    return "Throughput, requests/s (wrk, keep-alive connections)\n" + table(head, body)


def billing_section(b: dict[str, Any]) -> str:
    title = "Billing on vs off: /v1/messages claude (non-stream)"
    if not b["available"]:
        return f"{title}\nnot available: {b['reason']}"
    lat, thr = b["latency"], b["throughput"]
    head = ["figure", "billing on", "billing off", "on minus off"]
    body = [
        ["added latency p50, ms", ms(lat["on"]["added_p50"], True), ms(lat["off"]["added_p50"], True),
         ms(lat["on"]["added_p50"] - lat["off"]["added_p50"], True)],
        ["added latency p99, ms", ms(lat["on"]["added_p99"], True), ms(lat["off"]["added_p99"], True),
         ms(lat["on"]["added_p99"] - lat["off"]["added_p99"], True)],
        [f"throughput c{thr['concurrency']}, rps", num(thr["on"]["rps"]), num(thr["off"]["rps"]),
         num(thr["on"]["rps"] - thr["off"]["rps"])],
    ]
    return f"{title}\n" + table(head, body)


def tasks_section(t: dict[str, Any]) -> str:
    title = f"Tasks: /v1/tasks vs the same /v1/messages claude (non-stream) requests, c{t['concurrency']}"
    head = ["figure", "value"]
    body = [
        ["tasks/s (first submission to last finish)", num(t["tasks_per_s"])],
        ["submissions/s", num(t["submit_per_s"])],
        ["synchronous requests/s", num(t["sync_rps"])],
        ["gateway CPU per task, ms", ms(t["cpu_ms_per_task"])],
        ["gateway CPU per synchronous request, ms", ms(t["cpu_ms_per_request"])],
        ["added gateway CPU per task, ms", ms(t["cpu_ms_per_task"] - t["cpu_ms_per_request"], True)],
        ["tasks", f"{t['tasks']:,}"],
        ["errors", str(t["errors"])],
    ]
    return f"{title}\n" + table(head, body)


def servers_section(s: dict[str, Any]) -> str:
    head = ["figure", "uvicorn", "granian", "granian minus uvicorn"]
    body = []
    for r in s["latency"]:
        for p in ("p50", "p99"):
            u, g = r["uvicorn"][f"added_{p}"], r["granian"][f"added_{p}"]
            body.append([f"{r['label']} added {p}, ms", ms(u, True), ms(g, True), ms(g - u, True)])
    for r in s["throughput"]:
        u, g = r["uvicorn"]["rps"], r["granian"]["rps"]
        body.append([f"{r['label']} c{r['concurrency']}, rps", num(u), num(g), num(g - u)])
    return "Server: uvicorn vs granian (same app, same worker count)\n" + table(head, body)


def soak_section(s: dict[str, Any]) -> str:
    head = ["stage", "requests done", "gateway RSS MiB", "change MiB"]
    base = s["rows"][0]["rss_mib"]
    body = [[r["stage"], f"{r['done']:,}", f"{r['rss_mib']:.1f}", f"{r['rss_mib'] - base:+.1f}"] for r in s["rows"]]
    tail = (f"{s['requests']:,} requests at concurrency {s['concurrency']} over {len(s['routes'])} routes "
            f"({', '.join(s['routes'])}) in {s['seconds']:.1f} s ({s['rps']:,.0f} rps), errors: {s['errors']}")
    marks = {r["stage"]: r["rss_mib"] for r in s["rows"]}
    if "10%" in marks and "100%" in marks:
        tail += f"\ngrowth from 10% to 100% of the requests: {marks['100%'] - marks['10%']:+.1f} MiB"
    return "Soak: gateway resident memory (VmRSS, whole process tree)\n" + table(head, body) + "\n" + tail


def render(result: dict[str, Any]) -> str:
    parts = [header(result["meta"])]
    if "latency" in result:
        parts.append(latency_section(result["latency"]))
    if "throughput" in result:
        parts.append(throughput_section(result["throughput"]))
    if "billing" in result:
        parts.append(billing_section(result["billing"]))
    if "tasks" in result:
        parts.append(tasks_section(result["tasks"]))
    if "servers" in result:
        s = result["servers"]
        parts.append(servers_section(s) if s.get("available", True) else
                     f"Server: uvicorn vs granian\nnot available: {s['reason']}")
    if "soak" in result:
        parts.append(soak_section(result["soak"]))
    if result.get("problems"):
        parts.append("PROBLEMS\n" + "\n".join(f"- {p}" for p in result["problems"]))
    return "\n\n".join(parts) + "\n"
