"""The measurements of one bench run: which processes, where they are pinned, and each section's figures."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop

import loadgen
import procs
import taskqueue
import wrk
from payloads import Route, Target, routes

T = TypeVar("T")

LATENCY_ROUTES = ("native-json", "native-stream", "openai-json", "openai-stream", "gemini-json", "gemini-stream",
                  "chat-json", "chat-stream", "responses-json", "responses-stream", "responses-claude-json",
                  "responses-claude-stream")
THROUGHPUT_ROUTES = ("native-json", "native-stream")
CONCURRENCY = (16, 64)
SOAK_ROUTES = ("native-json", "native-stream", "openai-stream", "gemini-json", "chat-stream")
BILLING_OFF = ("BYTESPIKE_BILLING", "off")
TASK_CONCURRENCY = 16
WALLET_USD = "1000000"


@dataclass(frozen=True)
class Plan:
    requests: int  # per latency measurement
    duration: int  # seconds per throughput measurement
    latency_cap: float  # the most seconds one latency measurement may take
    workers: int
    pin: bool
    granian: bool
    whole_streams: bool
    soak: int | None
    soak_concurrency: int
    warm_connections: bool  # before each throughput figure, send two requests per connection first
    shared: bool = False  # PostgreSQL + Redis (throwaway servers started here) instead of SQLite

    @property
    def warmup(self) -> int:
        return max(5, min(50, self.requests // 20))


def lat_summary(x: loadgen.Latencies) -> dict[str, float]:
    return {"p50": x.pct(50), "p99": x.pct(99), "ttfb_p50": x.pct(50, ttfb=True), "samples": len(x.total_ns)}


def added(gw: dict[str, float], direct: dict[str, float]) -> dict[str, float]:
    return {k: gw[k] - direct[k] for k in ("p50", "p99", "ttfb_p50")}


def wrk_summary(r: wrk.WrkResult) -> dict[str, Any]:
    return {"rps": r.rps, "requests": r.requests, "seconds": r.seconds, "p50": r.p50_ms, "p99": r.p99_ms,
            "errors": r.errors}


class Bench:
    """One run: the processes it started, where they are pinned, and the figures so far."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.dir = workdir
        self.loop = uvloop.new_event_loop()
        self.t0 = time.perf_counter()
        self.problems: list[str] = []
        self.running: list[procs.Proc] = []
        allowed = sorted(os.sched_getaffinity(0))
        if plan.pin and len(allowed) >= 2 and plan.workers == 1:
            self.gw_cpus: set[int] | None = {allowed[-1]}
            self.load_cpus: set[int] | None = set(allowed[:-1])
            self.placement = (f"gateway pinned to CPU {allowed[-1]}; fake upstream, wrk and the latency client "
                              f"pinned to CPU {','.join(map(str, allowed[:-1]))}")
            self.wrk_threads = len(self.load_cpus)
            os.sched_setaffinity(0, self.load_cpus)
        else:
            self.gw_cpus = self.load_cpus = None
            why = "--no-pin" if not plan.pin else ("several workers" if plan.workers > 1 else "one CPU")
            self.placement = f"no pinning ({why}): gateway, fake upstream and load generators share every CPU"
            self.wrk_threads = min(2, len(allowed))
        self.fake_url = ""
        self.fake: procs.Proc | None = None
        self.config = Path()
        self.key = self.empty_key = ""
        self.routes: dict[str, Route] = {}
        self.services: list[Any] = []  # throwaway PostgreSQL and Redis servers (``Plan.shared``)

    def log(self, what: str) -> None:
        """Progress on stderr, so a long run shows where it is."""
        sys.stderr.write(f"[{time.perf_counter() - self.t0:6.1f}s] {what}\n")
        sys.stderr.flush()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        for p in reversed(self.running):
            p.stop()
        self.running.clear()
        for svc in reversed(self.services):
            svc.close()
        self.loop.close()

    # ------------------------------------------------------------ processes

    def start(self) -> None:
        self.fake, self.fake_url = procs.start_fake(self.dir, self.load_cpus, self.plan.whole_streams)
        self.running.append(self.fake)
        db_url = redis_url = None
        if self.plan.shared:
            self.log("starting PostgreSQL and Redis")
            pg, redis = procs.start_services()
            self.services += [pg, redis]
            db_url, redis_url = pg.database(), redis.url
        self.config, db_url = procs.write_config(self.dir, self.fake_url, db_url, redis_url)
        self.key, self.empty_key = procs.create_accounts(db_url, WALLET_USD)
        self.routes = routes(self.key)

    def gateway(self, server: str = "uvicorn", env: dict[str, str] | None = None,
                name: str = "gateway", own_db: bool = False) -> tuple[procs.Proc, str]:
        """``own_db``: a second gateway running beside the main one gets a snapshot of its database."""
        self.log(f"starting {name} ({server})")
        config = procs.clone_config(self.config, name.replace(" ", "-")) if own_db else self.config
        p, url = procs.start_gateway(self.dir, config, server=server, workers=self.plan.workers,
                                     cpus=self.gw_cpus, env=env, name=name)
        self.running.append(p)
        return p, url

    def stop(self, p: procs.Proc) -> None:
        p.stop()
        self.running.remove(p)

    # ------------------------------------------------------------ primitives

    def latency(self, url: str, target: Target, what: str) -> dict[str, float]:
        self.log(f"latency: {what}")
        res = self.run(loadgen.latency(url, target, self.plan.requests, self.plan.warmup, self.plan.latency_cap))
        if res.errors:
            self.problems.append(f"{what}: {res.errors} failed requests, first: {res.first_error}")
        return {**lat_summary(res), "errors": res.errors}

    def warm(self, url: str, target: Target, concurrency: int) -> None:
        res = self.run(loadgen.load(url, [target], concurrency * 2, concurrency))
        if res.errors:
            self.problems.append(f"warm-up of {url}{target.path}: {res.errors} failed, first: {res.first_error}")

    def wrk(self, url: str, target: Target, concurrency: int, what: str,
            watch: dict[str, int] | None = None, warm: bool = True) -> tuple[dict[str, Any], dict[str, float]]:
        """One wrk run (after opening its connections' worth of requests); also the CPU share of watched processes."""
        if warm and self.plan.warm_connections:
            self.warm(url, target, concurrency)
        self.log(f"throughput: {what}")
        before = {k: procs.cpu_seconds(pid) for k, pid in (watch or {}).items()}
        r = wrk.run(url, target, self.dir, connections=concurrency, seconds=self.plan.duration,
                    threads=self.wrk_threads, preexec=procs.pinned(self.load_cpus))
        cpu = {k: (procs.cpu_seconds(pid) - before[k]) / r.seconds * 100 for k, pid in (watch or {}).items()}
        if r.errors:
            self.problems.append(f"{what}: wrk counted {r.errors} errors (connect, read, write, status>399, timeout)")
        return wrk_summary(r), cpu

    # ------------------------------------------------------------ sections

    def latency_rows(self, gw_url: str) -> list[dict[str, Any]]:
        rows = []
        for name in LATENCY_ROUTES:
            route = self.routes[name]
            d = self.latency(self.fake_url, route.direct, f"direct {route.label}")
            g = self.latency(gw_url, route.gateway, f"gateway {route.label}")
            rows.append({"route": name, "label": route.label, "stream": route.stream, "samples": int(g["samples"]),
                         "direct": d, "gateway": g, "added": added(g, d), "ratio_p50": g["p50"] / d["p50"],
                         "errors": int(d["errors"] + g["errors"])})
        return rows

    def throughput_rows(self, gw: procs.Proc, gw_url: str) -> list[dict[str, Any]]:
        assert self.fake is not None
        rows = []
        for name in THROUGHPUT_ROUTES:
            route = self.routes[name]
            for c in CONCURRENCY:
                d, _ = self.wrk(self.fake_url, route.direct, c, f"direct {route.label} c{c}", warm=False)
                g, cpu = self.wrk(gw_url, route.gateway, c, f"gateway {route.label} c{c}",
                                  watch={"gateway": gw.pid, "upstream": self.fake.pid})
                rows.append({"route": name, "label": route.label, "concurrency": c, "direct": d, "gateway": g,
                             "ratio": g["rps"] / d["rps"] if d["rps"] else 0.0,
                             "gateway_cpu": cpu["gateway"], "upstream_cpu": cpu["upstream"]})
        return rows

    def billing(self, gw_url: str) -> dict[str, Any]:
        """Billing on (the main gateway) vs off (a second gateway started with BYTESPIKE_BILLING=off)."""
        off, off_url = self.gateway(env=dict([BILLING_OFF]), name="gateway billing off", own_db=True)
        try:
            route = self.routes["native-json"]
            client = loadgen.Client(off_url)
            empty = loadgen.request_bytes(client.netloc, _with_key(route.gateway, self.empty_key))
            try:
                self.run(client.call(empty, route.gateway.expect))
            except loadgen.BadAnswer as exc:
                return {"available": False, "reason": (
                    "the gateway does not support BYTESPIKE_BILLING=off (a key whose wallet is empty was refused "
                    f"by the gateway started with it: {str(exc)[:120]})")}
            finally:
                client.close()
            d = self.latency(self.fake_url, route.direct, "direct (billing section)")
            on = self.latency(gw_url, route.gateway, "gateway billing on")
            offl = self.latency(off_url, route.gateway, "gateway billing off")
            c = CONCURRENCY[0]
            on_t, _ = self.wrk(gw_url, route.gateway, c, f"gateway billing on c{c}")
            off_t, _ = self.wrk(off_url, route.gateway, c, f"gateway billing off c{c}")
            return {
                "available": True, "direct": d,
                "latency": {k: {"added_p50": v["p50"] - d["p50"], "added_p99": v["p99"] - d["p99"], **v}
                            for k, v in (("on", on), ("off", offl))},
                "throughput": {"concurrency": c, "on": on_t, "off": off_t},
            }
        finally:
            self.stop(off)

    def tasks(self) -> dict[str, Any]:
        """Queued tasks against the same requests made synchronously (``taskqueue.py``)."""
        n = max(200, min(2000, self.plan.requests))
        return taskqueue.measure(self, self.routes["native-json"].gateway, n, TASK_CONCURRENCY)

    def servers(self, gw_url: str) -> dict[str, Any]:
        """The same gateway under granian instead of uvicorn, measured back to back."""
        if not self.plan.granian:
            return {"available": False, "reason": "skipped (--no-granian)"}
        if not (procs.BIN / "granian").exists():
            return {"available": False, "reason": f"granian is not installed in {procs.BIN}"}
        gr, gr_url = self.gateway(server="granian", name="gateway granian", own_db=True)
        try:
            lat = []
            for name in ("native-json", "native-stream"):
                route = self.routes[name]
                d = self.latency(self.fake_url, route.direct, f"direct {route.label} (servers)")
                u = self.latency(gw_url, route.gateway, f"uvicorn {route.label}")
                g = self.latency(gr_url, route.gateway, f"granian {route.label}")
                lat.append({"route": name, "label": route.label, "direct": d,
                            "uvicorn": {"added_p50": u["p50"] - d["p50"], "added_p99": u["p99"] - d["p99"], **u},
                            "granian": {"added_p50": g["p50"] - d["p50"], "added_p99": g["p99"] - d["p99"], **g}})
            thr = []
            route = self.routes["native-json"]
            for c in CONCURRENCY:
                u, _ = self.wrk(gw_url, route.gateway, c, f"uvicorn {route.label} c{c}")
                g, _ = self.wrk(gr_url, route.gateway, c, f"granian {route.label} c{c}")
                thr.append({"route": "native-json", "label": route.label, "concurrency": c, "uvicorn": u,
                            "granian": g})
            return {"available": True, "latency": lat, "throughput": thr}
        finally:
            self.stop(gr)

    def soak(self) -> dict[str, Any]:
        assert self.plan.soak is not None
        total, conc = self.plan.soak, self.plan.soak_concurrency
        gw, url = self.gateway()
        rows = [{"stage": "before (started, idle)", "done": 0, "rss_mib": procs.rss_kib(gw.pid) / 1024}]
        step = max(1, total // 10)

        def progress(done: int) -> None:
            rows.append({"stage": f"{round(done / total * 100)}%", "done": done,
                         "rss_mib": procs.rss_kib(gw.pid) / 1024})
            self.log(f"soak: {done:,} of {total:,} requests, gateway RSS {rows[-1]['rss_mib']:.1f} MiB")

        targets = [self.routes[n].gateway for n in SOAK_ROUTES]
        res = self.run(loadgen.load(url, targets, total, conc, on_progress=progress, every=step))
        time.sleep(2)
        rows.append({"stage": "after (idle 2 s)", "done": res.requests, "rss_mib": procs.rss_kib(gw.pid) / 1024})
        if res.errors:
            self.problems.append(f"soak: {res.errors} failed requests, first: {res.first_error}")
        return {"requests": res.requests, "concurrency": conc, "routes": list(SOAK_ROUTES), "seconds": res.seconds,
                "rps": res.requests / res.seconds if res.seconds else 0.0, "errors": res.errors, "rows": rows}


def _with_key(target: Target, key: str) -> Target:
    headers = tuple((k, key) if k == "x-api-key" else (k, v) for k, v in target.headers)
    return Target(target.path, headers, target.body, target.expect)
