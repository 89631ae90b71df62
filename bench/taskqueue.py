"""The tasks figure: queued work through ``/v1/tasks`` against the same requests made synchronously.

A gateway of its own (a snapshot of the bench database, ``tasks.max_running`` = the concurrency,
no per-account cap below it, workers polling every 50 ms) takes the same non-streaming
``/v1/messages`` request N times at that concurrency, then N tasks carrying it: submitted over
that many connections, finished when the database says so. Reported: tasks per second from the
first submission to the last finish, synchronous requests per second, and the gateway's CPU per
task against per synchronous request (the difference is what queueing adds: the submission, the
lease, the stored answer and outcome).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

import loadgen
import procs
from payloads import Target

POLL = 0.05


def config_for_tasks(config: Path, concurrency: int) -> tuple[Path, str]:
    """A copy of ``config`` (on a snapshot of its database) whose workers run ``concurrency`` tasks."""
    path = procs.clone_config(config, "gateway-tasks")
    cfg = yaml.safe_load(path.read_text())
    cfg["tasks"] = {"max_running": concurrency, "max_running_per_account": concurrency, "poll_seconds": POLL}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, str(cfg["database_url"]).split(":///", 1)[1]


def finished(db: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM tasks WHERE status IN "
                                "('succeeded', 'failed', 'canceled', 'expired')").fetchone()[0])


def failed(db: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM tasks WHERE status != 'succeeded'").fetchone()[0])


async def submit(url: str, target: Target, n: int, concurrency: int) -> int:
    """``n`` submissions over ``concurrency`` connections; returns how many were refused."""
    body = b'{"request":' + target.body + b"}"
    headers = dict(target.headers)
    left = n
    refused = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left, refused
        while left > 0:
            left -= 1
            async with session.post(url + "/v1/tasks", data=body, headers=headers) as r:
                await r.read()
                if r.status != 202:
                    refused += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return refused


def measure(bench: Any, target: Target, n: int, concurrency: int) -> dict[str, Any]:
    config, db = config_for_tasks(bench.config, concurrency)
    gw, url = procs.start_gateway(bench.dir, config, server="uvicorn", workers=1, cpus=bench.gw_cpus,
                                  name="gateway tasks")
    bench.running.append(gw)
    try:
        bench.log(f"tasks: {n} synchronous requests at c{concurrency}")
        cpu0 = procs.cpu_seconds(gw.pid)
        sync = bench.run(loadgen.load(url, [target], n, concurrency))
        sync_cpu = procs.cpu_seconds(gw.pid) - cpu0
        bench.log(f"tasks: {n} tasks at c{concurrency}")
        cpu0 = procs.cpu_seconds(gw.pid)
        t0 = time.perf_counter()
        refused = bench.run(submit(url, target, n, concurrency))
        submitted = time.perf_counter() - t0
        deadline = time.time() + max(60.0, n / 5)
        while finished(db) < n - refused:
            if time.time() > deadline:
                bench.problems.append(f"tasks: only {finished(db)} of {n} tasks finished in time")
                break
            time.sleep(POLL / 2)
        seconds = time.perf_counter() - t0
        task_cpu = procs.cpu_seconds(gw.pid) - cpu0
        bad = failed(db) + refused
        if sync.errors or bad:
            bench.problems.append(f"tasks: {sync.errors} synchronous errors, {bad} tasks refused or not succeeded")
        return {
            "available": True, "tasks": n, "concurrency": concurrency,
            "tasks_per_s": n / seconds, "submit_per_s": n / submitted if submitted else 0.0,
            "sync_rps": sync.requests / sync.seconds if sync.seconds else 0.0,
            "cpu_ms_per_task": task_cpu / n * 1000, "cpu_ms_per_request": sync_cpu / max(sync.requests, 1) * 1000,
            "errors": sync.errors + bad,
        }
    finally:
        bench.stop(gw)
