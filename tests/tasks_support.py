"""Helpers for the task tests: a gateway whose workers poll quickly, submitting and waiting."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from conftest import Gateway
from conftest import test_config as gateway_config

V = {"anthropic-version": "2023-06-01"}
FINAL = ("succeeded", "failed", "canceled", "expired")

FAST_TASKS = {
    "poll_seconds": 0.1,
    "lease_seconds": 2,
    "backoff_seconds": 0.2,
    "backoff_max_seconds": 2,
    "admission_wait_seconds": 0.3,
    "max_running": 10,
    "max_running_per_account": 4,
    "allow_private_webhooks": True,
}


def task_gateway(fake_url: str, workdir: Path, tasks: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> Gateway:
    cfg = gateway_config(fake_url, workdir / "bytespike.db")
    cfg["tasks"] = {**FAST_TASKS, **(tasks or {})}
    return Gateway(workdir, cfg, env=env)


def haiku(text: str = "hi", max_tokens: int = 64) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}


def submit(gw: Gateway, key: str, request: dict[str, Any], **fields: Any) -> dict[str, Any]:
    headers = {"x-api-key": key, **fields.pop("headers", {})}
    r = httpx.post(gw.url + "/v1/tasks", headers=headers, json={"request": request, **fields}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()


def get(gw: Gateway, key: str, task_id: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/v1/tasks/{task_id}", headers={"x-api-key": key}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(gw: Gateway, key: str, task_id: str, statuses: tuple[str, ...] = FINAL,
             timeout: float = 30) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        t = get(gw, key, task_id)
        if t["status"] in statuses:
            return t
        assert time.time() < deadline, f"task still {t['status']}: {t}"
        time.sleep(0.05)


def statuses(gw: Gateway, account_id: str) -> dict[str, int]:
    return dict(gw.query("SELECT status, COUNT(*) FROM tasks WHERE account_id = ? GROUP BY status", account_id))


def books_match(gw: Gateway, account_id: str) -> None:
    """The ledger's charges are the usage records' costs, one charge per billed request."""
    charges = gw.query("SELECT request_id, -amount FROM ledger WHERE account_id = ? AND kind = 'charge' "
                       "ORDER BY request_id", account_id)
    billed = gw.query("SELECT request_id, cost FROM usage_records WHERE account_id = ? AND cost > 0 "
                      "ORDER BY request_id", account_id)
    assert charges == billed
    total = gw.query("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account_id = ?", account_id)[0][0]
    last = gw.query("SELECT balance_after FROM ledger WHERE account_id = ? ORDER BY id DESC LIMIT 1", account_id)[0][0]
    assert total == last


class WebhookReceiver:
    """A webhook endpoint on loopback: answers each delivery with the next scripted status (then
    200) and keeps what it got."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        import threading

        from fakeupstream import _free_port

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.statuses = list(statuses or [])
        self.got: list[tuple[dict[str, str], bytes, float]] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        with self._lock:
            self.got.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body, time.time()))
            status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})

    def start(self) -> WebhookReceiver:
        import threading

        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="critical",
                                                     lifespan="off", loop="asyncio", http="h11"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            assert time.time() < deadline, "webhook receiver did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def wait(self, n: int, timeout: float = 20) -> list[tuple[dict[str, str], bytes, float]]:
        deadline = time.time() + timeout
        while len(self.got) < n:
            assert time.time() < deadline, f"{len(self.got)} of {n} deliveries arrived"
            time.sleep(0.05)
        return list(self.got)


class CountingUpstream:
    """An Anthropic Messages upstream that knows each request's job (the user text) and counts, per
    job, the answers it completed and the requests abandoned by a gateway that died. While ``hold``
    is set it answers nothing (requests wait until their connection drops); ``delay`` slows every
    answer. Tracks requests in flight per tag (the text before the first space)."""

    def __init__(self) -> None:
        import threading

        from fakeupstream import _free_port

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hold = threading.Event()
        self.answer_first = 0  # while holding, still answer this many
        self.delay = 0.0
        self.completed: dict[str, int] = {}
        self.abandoned: dict[str, int] = {}
        self.inflight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_total = 0
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: Any = None

    def held(self) -> int:
        with self._lock:
            return sum(self.inflight.values())

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        import asyncio

        import orjson

        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        job = orjson.loads(body)["messages"][0]["content"]
        tag = job.split(" ", 1)[0]
        with self._lock:
            self.inflight[tag] = self.inflight.get(tag, 0) + 1
            self.peak[tag] = max(self.peak.get(tag, 0), self.inflight[tag])
            self.peak_total = max(self.peak_total, sum(self.inflight.values()))
            wait = self.hold.is_set() and self.answer_first <= 0
            if self.hold.is_set() and not wait:
                self.answer_first -= 1
        try:
            if wait:  # until the hold is lifted, or the connection drops
                gone = asyncio.ensure_future(receive())
                while self.hold.is_set():
                    done, _ = await asyncio.wait({gone}, timeout=0.05)
                    if done:
                        with self._lock:
                            self.abandoned[job] = self.abandoned.get(job, 0) + 1
                        return
                gone.cancel()
            if self.delay:
                await asyncio.sleep(self.delay)
            out = orjson.dumps({"id": "msg_" + str(abs(hash(job))), "type": "message", "role": "assistant",
                                "model": "claude-haiku-4-5", "content": [{"type": "text", "text": "done " + job}],
                                "stop_reason": "end_turn", "stop_sequence": None,
                                "usage": {"input_tokens": 100, "output_tokens": 50}})
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": out})
            with self._lock:
                self.completed[job] = self.completed.get(job, 0) + 1
        finally:
            with self._lock:
                self.inflight[tag] -= 1

    def start(self) -> CountingUpstream:
        import threading

        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="critical",
                                                     lifespan="off", loop="asyncio", http="h11",
                                                     timeout_keep_alive=60))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            assert time.time() < deadline, "counting upstream did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


def submit_many(gw: Gateway, key: str, jobs: list[str], **fields: Any) -> list[str]:
    ids = []
    with httpx.Client(base_url=gw.url, headers={"x-api-key": key}, timeout=30) as client:
        for job in jobs:
            r = client.post("/v1/tasks", json={"request": haiku(job), **fields})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
    return ids
