"""Workers: lease queued tasks from the database and run each through its endpoint, in process.

A run is the endpoint's own ASGI handler called with a scope the gateway builds (the task's stored
body, its key already known), so admission, holds, limits, failover, settlement, the usage record
and metrics are exactly a synchronous request's. What the handler answers decides the task:

- 200: the answer is stored the moment it arrives (before it is settled), then the task succeeds
  with the cost settlement charged. A process that dies in between finishes it from the stored
  answer on restart instead of asking the upstream again.
- refused before any upstream call (402 wallet, 429 key window or concurrency): back to the queue,
  attempt not counted, until the wallet or window allows it or the deadline passes (``expired``).
- 429 / 5xx / timeouts from upstream: retried with backoff (at least ``retry-after``) up to
  ``tasks.max_attempts`` (then ``failed``) or the deadline (then ``expired``).
- anything else: ``failed`` with the endpoint's error body. Never billed, as for any failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from bytespike.errors import GatewayError
from bytespike.gateway.call import Call
from bytespike.gateway.pipeline import TASK_SCOPE
from bytespike.http.asgi import Receive, Scope, Send
from bytespike.protocols.base import Inbound
from bytespike.store import tasks as store
from bytespike.store.accounts import KeyRecord
from bytespike.tasks import routes
from bytespike.tasks.writer import BatchWriter

if TYPE_CHECKING:
    from bytespike.state import State
    from bytespike.tasks.service import Tasks

log = logging.getLogger("bytespike.tasks.worker")

RETRYABLE = frozenset((408, 429, 500, 502, 503, 504, 529))
ADMISSION = frozenset((402, 429))
RETENTION_INTERVAL = 3600.0


class TaskRun:
    """What the pipeline sees of a task (``scope[TASK_SCOPE]``): its id and key; it leaves its Call."""

    __slots__ = ("task_id", "key", "call")

    def __init__(self, task_id: str, key: KeyRecord) -> None:
        self.task_id = task_id
        self.key = key
        self.call: Call | None = None


@dataclass
class _Active:
    token: str
    row: store.TaskRow
    task: asyncio.Task[None] | None = None
    canceled: bool = False  # canceled by its owner: the row says so already
    lost: bool = False  # the lease is no longer ours
    shutdown: bool = False  # this process is stopping: back to the queue
    stored: bool = False  # the answer is in the row


@dataclass
class _Capture:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    done: bool = False


class Worker:
    def __init__(self, state: State, tasks: Tasks) -> None:
        self.state = state
        self.tasks = tasks
        self.cfg = state.settings.tasks
        self.db = state.db
        self.wake = asyncio.Event()
        self._active: dict[str, _Active] = {}
        self._writer = BatchWriter(tasks.write)
        self._expired_at = 0.0  # when overdue queued tasks were last expired (monotonic)
        # Refused by admission until then (monotonic): their other tasks are not taken meanwhile,
        # so an empty wallet costs one refused request per wait, not one per queued task.
        self._blocked_accounts: dict[str, float] = {}
        self._blocked_keys: dict[str, float] = {}
        # Accounts and keys admission refused last time: one task probes, the rest wait for it.
        self._probing: set[str] = set()

    # ------------------------------------------------------------ loops

    async def recover(self, sole_owner: bool) -> None:
        if not sole_owner:
            return  # other processes' leases lapse on their own when they die
        async with self.tasks.write() as conn:
            n = await store.release_all_running(conn)
        if n:
            log.warning("%d task(s) were running when the gateway last stopped; they run again", n)

    async def run(self) -> None:
        renewals = asyncio.create_task(self._renewals())
        try:
            while True:
                try:
                    await self._round()
                except (SQLAlchemyError, OSError):
                    log.exception("taking tasks failed; retrying")
                try:
                    await asyncio.wait_for(self.wake.wait(), self.cfg.poll_seconds)
                except TimeoutError:
                    pass
                self.wake.clear()
        finally:
            renewals.cancel()

    async def retention(self) -> None:
        while True:
            try:
                n = await self.tasks.purge()
                if n:
                    log.info("purged %d task(s) older than %s days", n, self.cfg.retention_days)
            except (SQLAlchemyError, OSError):
                log.exception("purging old tasks failed")
            await asyncio.sleep(RETENTION_INTERVAL)

    async def stop(self) -> None:
        """Stop every run (unbilled) and put its task back in the queue for the next process."""
        running = [a.task for a in self._active.values() if a.task is not None]
        for a in self._active.values():
            if a.task is not None and not a.stored:  # an answer in hand is finished, not thrown away
                a.shutdown = True
                a.task.cancel()
        if running:
            await asyncio.wait(running, timeout=30)
        await self._writer.close()

    def stop_task(self, task_id: str) -> None:
        """Its owner canceled it: stop the request (the pipeline settles it unbilled)."""
        a = self._active.get(task_id)
        if a is not None and a.task is not None:
            a.canceled = True
            a.task.cancel()

    async def _round(self) -> None:
        now = time.time()
        room = self.cfg.max_running - len(self._active)
        mono = time.monotonic()
        for blocked in (self._blocked_accounts, self._blocked_keys):
            for k in [k for k, until in blocked.items() if until <= mono]:
                del blocked[k]
        expire = time.monotonic() - self._expired_at >= self.cfg.poll_seconds
        if room <= 0 and not expire:
            return
        async with self.tasks.write() as conn:
            if expire:
                self._expired_at = time.monotonic()
                for endpoint in routes.ENDPOINTS.values():
                    expired = _error_body(endpoint.inbound, "timeout_error",
                                          "the task's deadline passed before it could run")
                    if await store.expire_overdue(conn, now, endpoint.path, expired):
                        self.tasks.finished()
            if room <= 0:
                return
            rows = await store.claim(conn, now, limit=room, lease_seconds=self.cfg.lease_seconds,
                                     total_cap=self.cfg.max_running, per_account=self.cfg.max_running_per_account,
                                     skip_accounts=list(self._blocked_accounts), skip_keys=list(self._blocked_keys))
            keys = await store.keys_by_id(conn, [r.key_id for r in rows]) if rows else {}
        probes = {p for p in self._probing
                  if any(_owner(r) == p or r.key_id == p for r in (a.row for a in self._active.values()))}
        for row in rows:
            assert row.lease_token is not None
            probe = next((p for p in (_owner(row), row.key_id) if p in self._probing), None)
            if probe is not None and probe in probes:
                await self._write(store.requeue, row.id, row.lease_token, now + self.cfg.admission_wait_seconds,
                                  counted=False)
                continue
            if probe is not None:
                probes.add(probe)
            a = self._active[row.id] = _Active(row.lease_token, row)
            a.task = asyncio.create_task(self._run(row, a, keys.get(row.key_id)))

    async def _renewals(self) -> None:
        while True:
            await asyncio.sleep(max(self.cfg.lease_seconds / 3, 0.05))
            leases = [(tid, a.token) for tid, a in self._active.items()]
            if not leases:
                continue
            try:
                async with self.tasks.write() as conn:
                    lost = await store.renew(conn, leases, time.time() + self.cfg.lease_seconds)
            except (SQLAlchemyError, OSError):
                log.exception("renewing task leases failed")
                continue
            for tid in lost:
                a = self._active.get(tid)
                if a is not None and a.task is not None and not a.stored:
                    a.lost = True  # canceled from elsewhere, or taken over: stop, write nothing
                    a.task.cancel()

    # ------------------------------------------------------------ one run

    async def _run(self, row: store.TaskRow, a: _Active, key: KeyRecord | None) -> None:
        try:
            await self._execute(row, a, key)
        except asyncio.CancelledError:
            if a.shutdown and not a.stored:
                await self._write(store.requeue, row.id, a.token, time.time(), counted=False)
        except (SQLAlchemyError, OSError):
            log.exception("task %s: the database failed; its lease will lapse and it runs again", row.id)
        finally:
            self._active.pop(row.id, None)
            self.wake.set()

    async def _write(self, fn: Any, *args: Any, **kw: Any) -> bool:
        return bool(await self._writer.run(fn, *args, **kw))

    async def _finish(self, row: store.TaskRow, a: _Active, status: str, **values: Any) -> None:
        if await self._write(store.finish, row.id, a.token, status, time.time(), **values):
            self.tasks.finished()

    async def _execute(self, row: store.TaskRow, a: _Active, key: KeyRecord | None) -> None:
        endpoint = routes.ENDPOINTS[row.endpoint]
        if row.result is not None and row.request_id is not None:
            await self._finish_answered(row, a)
            return
        if time.time() >= row.deadline_at:
            await self._finish(row, a, "expired", error=_error_body(
                endpoint.inbound, "timeout_error", "the task's deadline passed before it could finish"))
            return
        refusal = _key_refusal(key)
        if refusal is not None or key is None:
            await self._finish(row, a, "failed", http_status=401,
                               error=_error_body(endpoint.inbound, "authentication_error", refusal or "no such key"))
            return
        run = TaskRun(row.id, key)
        cap = _Capture()
        timeout = asyncio.timeout(row.deadline_at - time.time())
        async with timeout:
            await endpoint.handler(self.state, self._scope(row, run), _receive(row.request.encode()),
                                   self._send(row, a, cap, run))
        if a.canceled or a.lost:
            return
        if a.shutdown:
            if not a.stored:
                await self._write(store.requeue, row.id, a.token, time.time(), counted=False)
                return
        if a.stored:
            self._admitted(row)
            call = run.call
            await self._finish(row, a, "succeeded", cost=call.charge if call else 0,
                               usage=orjson.dumps(call.usage).decode() if call and call.usage else None)
            return
        if timeout.expired():
            await self._finish(row, a, "expired", error=_error_body(
                endpoint.inbound, "timeout_error", "the task's deadline passed before its answer arrived"))
            return
        await self._failed_attempt(row, a, cap, run.call)

    def _admitted(self, row: store.TaskRow) -> None:
        self._probing.discard(_owner(row))
        self._probing.discard(row.key_id)

    async def _finish_answered(self, row: store.TaskRow, a: _Active) -> None:
        """Answered before its process died: finish from the stored answer, as it was billed."""
        assert row.request_id is not None
        async with self.db.read() as conn:
            billed = await store.billed(conn, row.request_id)
        cost, usage = billed if billed is not None else (0, None)
        if billed is None:
            log.warning("task %s was answered but its charge was lost in a crash; it stays unbilled", row.id)
        await self._finish(row, a, "succeeded", attempts=max(row.attempts - 1, 1),
                           cost=cost, usage=orjson.dumps(usage).decode() if usage else None)

    async def _failed_attempt(self, row: store.TaskRow, a: _Active, cap: _Capture, call: Call | None) -> None:
        now = time.time()
        status = cap.status or 500
        body = bytes(cap.body).decode("utf-8", "replace") or None
        retry_after = _seconds(cap.headers.get("retry-after"))
        upstream_tried = call is not None and call.attempts > 0
        if upstream_tried:
            self._admitted(row)
        if status in ADMISSION and not upstream_tried:
            wait = retry_after if retry_after is not None else self.cfg.admission_wait_seconds
            if status == 402:
                self._blocked_accounts[row.account_id] = time.monotonic() + wait
                self._probing.add(_owner(row))
            else:
                self._blocked_keys[row.key_id] = time.monotonic() + wait
                self._probing.add(row.key_id)
            if now + wait >= row.deadline_at:
                await self._finish(row, a, "expired", http_status=status, error=body)
            else:
                await self._write(store.requeue, row.id, a.token, now + wait, counted=False, http_status=status,
                                  error=body)
            return
        if status in RETRYABLE:
            if row.attempts >= self.cfg.max_attempts:
                await self._finish(row, a, "failed", http_status=status, error=body)
                return
            delay = min(self.cfg.backoff_seconds * 2 ** (row.attempts - 1), self.cfg.backoff_max_seconds)
            delay = max(delay, retry_after or 0.0)
            if now + delay >= row.deadline_at:
                await self._finish(row, a, "expired", http_status=status, error=body)
            else:
                await self._write(store.requeue, row.id, a.token, now + delay, counted=True, http_status=status,
                                  error=body)
            return
        await self._finish(row, a, "failed", http_status=status, error=body)

    # ------------------------------------------------------------ the synthetic request

    def _scope(self, row: store.TaskRow, run: TaskRun) -> Scope:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(row.request)).encode())]
        for name, value in (orjson.loads(row.headers) if row.headers else {}).items():
            headers.append((name.encode(), str(value).encode("latin-1")))
        return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                "scheme": "http", "path": row.endpoint, "raw_path": row.endpoint.encode(), "query_string": b"",
                "headers": headers, "client": None, "server": None, TASK_SCOPE: run}

    def _send(self, row: store.TaskRow, a: _Active, cap: _Capture, run: TaskRun) -> Send:
        async def send(msg: MutableMapping[str, Any]) -> None:
            if cap.done:
                return
            if msg["type"] == "http.response.start":
                cap.status = int(msg["status"])
                cap.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in msg.get("headers", [])}
                return
            cap.body += msg.get("body", b"")
            if msg.get("more_body"):
                return
            cap.done = True
            if cap.status != 200:
                return
            if a.canceled or a.lost or a.shutdown:
                raise asyncio.CancelledError  # stopped while the answer was arriving: settled unbilled
            stored = await self._write(store.store_answer, row.id, a.token,
                                       request_id=cap.headers.get("request-id", ""), http_status=200,
                                       result=bytes(cap.body).decode())
            if not stored:
                a.lost = True
                raise asyncio.CancelledError  # canceled meanwhile: this answer is not billed either
            a.stored = True

        return send


def _owner(row: store.TaskRow) -> str:
    return "account:" + row.account_id


def _receive(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no client to go away: wait until the run ends
        return {"type": "http.disconnect"}

    return receive


def _key_refusal(key: KeyRecord | None) -> str | None:
    if key is None:
        return "the key that submitted this task no longer exists"
    if key.revoked_at is not None:
        return "the key that submitted this task has been revoked"
    if key.expires_at is not None and key.expires_at <= time.time():
        return "the key that submitted this task has expired"
    return None


def _seconds(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def _error_body(inbound: Inbound, type_: str, message: str) -> str:
    return inbound.error_body(GatewayError(type_, message), "").decode()
