"""The ByteSpike bench: what the gateway adds to a call, measured against the same call made directly.

Starts a fast fake upstream and a gateway (fresh temporary directory, SQLite, a funded key), then
measures, each figure beside a direct call to the same fake upstream in the same run: added
latency at concurrency 1 on every route, throughput at concurrency 16 and 64, billing on vs off,
uvicorn vs granian; or, with ``--soak``, the gateway's memory over many requests.

    python bench/run.py [--quick] [--requests N] [--duration S] [--workers N] [--json OUT] [--soak [N]] [--shared]

``--shared`` runs the same figures on PostgreSQL + Redis (throwaway servers) instead of SQLite:
run it beside a plain run to compare.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

import procs
import report
import wrk
from suite import Bench, Plan


def parse_args(argv: list[str] | None = None) -> tuple[Plan, Path | None]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (about 30 s): proves the bench works, numbers rough")
    ap.add_argument("--requests", type=int, help="requests per latency measurement (default 2000, quick 300)")
    ap.add_argument("--duration", type=int, help="seconds per throughput measurement, and the most a latency "
                                                 "measurement may take (default 4; quick: 1, latency 0.5)")
    ap.add_argument("--workers", type=int, default=1, help="gateway worker processes (default 1)")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write every figure as JSON to OUT")
    ap.add_argument("--soak", type=int, nargs="?", const=50_000, metavar="N",
                    help="soak mode: N requests (default 50,000) and the gateway's memory along the way")
    ap.add_argument("--soak-concurrency", type=int, default=16)
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--no-granian", action="store_true", help="skip the uvicorn vs granian comparison")
    ap.add_argument("--shared", action="store_true",
                    help="run every figure on PostgreSQL + Redis (throwaway servers) instead of SQLite")
    ap.add_argument("--whole-streams", action="store_true",
                    help="the fake upstream sends each stream in one write instead of one write per event")
    a = ap.parse_args(argv)
    plan = Plan(
        requests=a.requests or (300 if a.quick else 2000),
        duration=a.duration or (1 if a.quick else 4),
        latency_cap=float(a.duration) if a.duration else (0.5 if a.quick else 4.0),
        workers=a.workers, pin=not a.no_pin, granian=not a.no_granian, whole_streams=a.whole_streams,
        soak=a.soak, soak_concurrency=a.soak_concurrency, warm_connections=not a.quick, shared=a.shared,
    )
    return plan, a.json


# ---------------------------------------------------------------- the run


def machine(plan: Plan, placement: str) -> dict[str, Any]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for pkg in ("uvicorn", "granian", "aiohttp", "uvloop", "sqlalchemy"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu, "cores": os.cpu_count(), "kernel": f"Linux {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": _commit(), "versions": ", ".join(versions), "gateway_workers": plan.workers,
        "placement": placement, "load_before": _load(), "load_after": None,
        "settings": (f"{plan.requests} requests per latency figure (at most {plan.latency_cap:g} s, after "
                     f"{plan.warmup} warm-up), {plan.duration} s per throughput figure; upstream streams sent "
                     + ("in one write" if plan.whole_streams else "one write per event")
                     + ("; database: PostgreSQL + Redis" if plan.shared else "; database: SQLite")),
        "wrk": shutil.which("wrk") or wrk.WRK,
    }
    inherited = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("BYTESPIKE_"))
    if inherited:
        meta["settings"] += "; gateway environment: " + " ".join(inherited)
    return meta


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(procs.ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(procs.ROOT), "status", "--porcelain", "src"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" (src modified)" if dirty else "")


def run(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bytespike-bench-") as tmp:
        bench = Bench(plan, Path(tmp))
        result: dict[str, Any] = {"meta": machine(plan, bench.placement)}
        try:
            bench.start()
            if plan.soak is not None:
                result["soak"] = bench.soak()
            else:
                gw, url = bench.gateway()
                result["latency"] = bench.latency_rows(url)
                result["throughput"] = bench.throughput_rows(gw, url)
                result["billing"] = bench.billing(url)
                result["tasks"] = bench.tasks()
                result["servers"] = bench.servers(url)
        except Exception as exc:
            logs = "\n".join(f"--- {p.name} log:\n{p.tail(1500)}" for p in bench.running)
            raise RuntimeError(f"bench failed: {exc}\n{logs}") from exc
        finally:
            bench.close()
        result["meta"]["load_after"] = _load()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["meta"]["children_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
        result["problems"] = bench.problems
        return result


def main(argv: list[str] | None = None) -> int:
    plan, json_out = parse_args(argv)
    started = time.perf_counter()
    result = run(plan)
    result["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    sys.stdout.write(report.render(result))
    sys.stdout.write(f"\n(bench took {result['meta']['wall_s']} s)\n")
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
