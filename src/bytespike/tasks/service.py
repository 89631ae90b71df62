"""Queued tasks: submission (validated then, not when they run), reading, listing, cancelling.

A task is stored before its 202 is sent; workers (``worker.py``) run it later through the same
endpoint a synchronous request takes, and webhooks (``webhooks.py``) report its end.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.exc import IntegrityError

from bytespike.billing import money
from bytespike.config import TasksConfig
from bytespike.errors import GatewayError, bad_request
from bytespike.gateway import pipeline
from bytespike.store import tasks as store
from bytespike.store.accounts import KeyRecord
from bytespike.store.db import Database
from bytespike.tasks import routes
from bytespike.tasks.webhooks import Deliverer, check_target

if TYPE_CHECKING:
    from bytespike.state import State
    from bytespike.tasks.worker import Worker

MAX_METADATA_BYTES = 16 * 1024
MAX_IDEMPOTENCY_KEY = 200
MAX_PAGE = 100
_FIELDS = ("request", "endpoint", "metadata", "webhook_url", "deadline_seconds")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def view(row: store.TaskRow, deliveries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The task as clients see it (``GET /v1/tasks/{id}``, lists and webhooks)."""
    final = row.status in store.FINAL
    out: dict[str, Any] = {
        "id": row.id,
        "object": "task",
        "status": row.status,
        "endpoint": row.endpoint,
        "model": row.model,
        "metadata": orjson.loads(row.metadata) if row.metadata else None,
        "attempts": row.attempts,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "deadline_at": iso(row.deadline_at),
        "result": orjson.loads(row.result) if row.result and row.status == "succeeded" else None,
        "error": orjson.loads(row.error) if row.error and row.status != "succeeded" else None,
        "usage": orjson.loads(row.usage) if row.usage else None,
        "cost_usd": money.format_usd(row.cost or 0) if final else None,
        "request_id": row.request_id,
        "webhook_url": row.webhook_url,
        "webhook_status": row.webhook_state,
    }
    if deliveries is not None:
        out["webhook_deliveries"] = [
            {"attempt": d["attempt"], "at": iso(d["at"]), "status_code": d["status_code"], "error": d["error"],
             "duration_ms": round(d["duration_ms"] or 0, 1)} for d in deliveries]
    return out


class Tasks:
    """The task service: one per gateway process (and one without workers for the CLI)."""

    def __init__(self, db: Database, cfg: TasksConfig, state: State | None = None) -> None:
        """``state``: the gateway's, to submit and run tasks; without it (the CLI) only reading,
        cancelling and purging work."""
        self.db = db
        self.cfg = cfg
        self._state = state
        self.worker: Worker | None = None
        self.deliverer: Deliverer | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._write_lock = asyncio.Lock() if db.sqlite else None

    def write(self) -> Any:
        """A write transaction. On SQLite this process's task writes queue here, one at a time,
        rather than in SQLite's busy handler, whose sleeps grow long when many connections wait."""
        return _Serialised(self.db, self._write_lock)

    @property
    def state(self) -> State:
        assert self._state is not None, "this task service has no gateway state"
        return self._state

    # ------------------------------------------------------------ lifecycle

    async def start(self, *, sole_owner: bool) -> None:
        """Start the workers and the webhook sender. ``sole_owner``: this is the only process on the
        database, so whatever shows as running was left by a process that died."""
        from bytespike.tasks.worker import Worker

        self.worker = Worker(self.state, self)
        self.deliverer = Deliverer(self.db, self.cfg, self)
        await self.worker.recover(sole_owner)
        self._loops = [asyncio.create_task(self.worker.run()), asyncio.create_task(self.deliverer.run()),
                       asyncio.create_task(self.worker.retention())]

    async def stop(self) -> None:
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            try:
                await t
            except asyncio.CancelledError:
                pass
        if self.worker is not None:
            await self.worker.stop()
        if self.deliverer is not None:
            await self.deliverer.close()

    def finished(self) -> None:
        """A task reached a final status: its webhook may be due."""
        if self.deliverer is not None:
            self.deliverer.wake.set()

    # ------------------------------------------------------------ submission

    async def submit(self, key: KeyRecord, raw: bytes, headers: dict[bytes, bytes],
                     idempotency_key: str | None) -> tuple[store.TaskRow, bool]:
        """Validate and store a task; returns it and whether it was an idempotent replay."""
        sub = _object(raw)
        for name in sub:
            if name not in _FIELDS:
                raise bad_request(f"{name}: unknown field (expected one of: {', '.join(_FIELDS)})", param=name)
        endpoint = sub.get("endpoint", routes.DEFAULT)
        target = routes.ENDPOINTS.get(endpoint) if isinstance(endpoint, str) else None
        if target is None:
            raise bad_request(f"endpoint: expected one of {', '.join(routes.ENDPOINTS)}", param="endpoint")
        req = sub.get("request")
        if not isinstance(req, dict):
            raise bad_request("request: field required (the endpoint's request body, a JSON object)", param="request")
        if req.get("stream") is True:
            raise bad_request("request.stream: tasks are not streamed; leave stream out or false",
                              param="request.stream")
        metadata = sub.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise bad_request("metadata: expected a JSON object", param="metadata")
        meta = orjson.dumps(metadata) if metadata is not None else None
        if meta is not None and len(meta) > MAX_METADATA_BYTES:
            raise bad_request(f"metadata: larger than {MAX_METADATA_BYTES} bytes", param="metadata")
        webhook = sub.get("webhook_url")
        if webhook is not None:
            if not isinstance(webhook, str):
                raise bad_request("webhook_url: expected a URL string", param="webhook_url")
            await check_target(webhook, self.cfg.allow_private_webhooks)
        deadline = sub.get("deadline_seconds", self.cfg.default_deadline_seconds)
        if not isinstance(deadline, int) or isinstance(deadline, bool) or not 1 <= deadline <= \
                self.cfg.max_deadline_seconds:
            raise bad_request(f"deadline_seconds: a whole number of seconds from 1 to {self.cfg.max_deadline_seconds}",
                              param="deadline_seconds")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise bad_request(f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} characters", param="Idempotency-Key")
        body = orjson.dumps(req)
        forwarded = {h: headers[h.encode()].decode("latin-1") for h in routes.FORWARDED_HEADERS
                     if h.encode() in headers}
        try:
            resolved = pipeline.validate(self.state, target.inbound, body, key,
                                         {k.encode(): v.encode() for k, v in forwarded.items()})
        except GatewayError as err:
            raise _as_submission_error(err) from None
        digest = hashlib.sha256(orjson.dumps({"endpoint": endpoint, "request": req, "metadata": metadata,
                                              "webhook_url": webhook, "deadline_seconds": deadline},
                                             option=orjson.OPT_SORT_KEYS)).hexdigest()
        if idempotency_key is not None:
            async with self.db.read() as conn:
                existing = await store.by_idempotency_key(conn, key.account_id, idempotency_key)
            if existing is not None:
                return _replay(existing, digest), True
        now = time.time()
        values = {
            "id": store.new_task_id(), "account_id": key.account_id, "key_id": key.id, "endpoint": endpoint,
            "model": resolved.asked, "request": body.decode(), "headers": orjson.dumps(forwarded).decode(),
            "metadata": meta.decode() if meta is not None else None, "webhook_url": webhook,
            "idempotency_key": idempotency_key, "request_hash": digest, "status": "queued", "attempts": 0,
            "created_at": now, "not_before": now, "deadline_at": now + deadline, "webhook_attempts": 0,
        }
        try:
            async with self.write() as conn:
                row = await store.insert_task(conn, values)
        except IntegrityError:  # the same Idempotency-Key, submitted at the same moment
            async with self.db.read() as conn:
                existing = await store.by_idempotency_key(conn, key.account_id, idempotency_key or "")
            if existing is None:
                raise
            return _replay(existing, digest), True
        if self.worker is not None:
            self.worker.wake.set()
        return row, False

    # ------------------------------------------------------------ reading and cancelling

    async def get(self, account_id: str | None, task_id: str, *, with_deliveries: bool = True) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await store.get(conn, task_id, account_id)
            if row is None:
                raise GatewayError("not_found_error", f"no task {task_id!r}")
            log = await store.deliveries(conn, task_id) if with_deliveries and row.webhook_url else None
        return view(row, log)

    async def page(self, account_id: str | None, *, status: str | None, after: str | None,
                   limit: int) -> dict[str, Any]:
        if status is not None and status not in store.STATUSES:
            raise bad_request(f"status: expected one of {', '.join(store.STATUSES)}", param="status")
        if not 1 <= limit <= MAX_PAGE:
            raise bad_request(f"limit: from 1 to {MAX_PAGE}", param="limit")
        async with self.db.read() as conn:
            cursor = None
            if after is not None:
                cursor = await store.get(conn, after, account_id)
                if cursor is None:
                    raise bad_request(f"after: no task {after!r}", param="after")
            rows = await store.page(conn, account_id, status=status, after=cursor, limit=limit)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"object": "list", "data": [view(r) for r in rows], "has_more": more,
                "first_id": rows[0].id if rows else None, "last_id": rows[-1].id if rows else None}

    async def cancel(self, account_id: str | None, task_id: str) -> dict[str, Any]:
        async with self.write() as conn:
            row = await store.cancel(conn, task_id, account_id, time.time())
        if row is None:
            raise GatewayError("not_found_error", f"no task {task_id!r}")
        if row.status == "canceled":
            if self.worker is not None:
                self.worker.stop_task(task_id)
            self.finished()
        return view(row)

    async def purge(self, older_than_days: float | None = None) -> int:
        days = self.cfg.retention_days if older_than_days is None else older_than_days
        async with self.write() as conn:
            return await store.purge(conn, time.time() - days * 86400)

    async def webhook_body(self, row: store.TaskRow) -> bytes:
        async with self.db.read() as conn:
            fresh = await store.get(conn, row.id) or row
        return orjson.dumps(view(fresh))


class _Serialised:
    __slots__ = ("_db", "_lock", "_tx")

    def __init__(self, db: Database, lock: asyncio.Lock | None) -> None:
        self._db, self._lock = db, lock
        self._tx: Any = None

    async def __aenter__(self) -> Any:
        if self._lock is not None:
            await self._lock.acquire()
        try:
            self._tx = self._db.write()
            return await self._tx.__aenter__()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    async def __aexit__(self, *exc: Any) -> bool:
        try:
            return bool(await self._tx.__aexit__(*exc))
        finally:
            if self._lock is not None:
                self._lock.release()


def _object(raw: bytes) -> dict[str, Any]:
    try:
        sub = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(sub, dict):
        raise bad_request("request body must be a JSON object")
    return sub


def _replay(existing: store.TaskRow, digest: str) -> store.TaskRow:
    if existing.request_hash != digest:
        raise GatewayError("invalid_request_error", "Idempotency-Key: already used for a different task submission",
                           status=409, param="Idempotency-Key")
    return existing


def _as_submission_error(err: GatewayError) -> GatewayError:
    """A request that would fail is refused now, as a 400 naming the field under ``request``."""
    if err.param and err.message.startswith(f"{err.param}:"):
        return GatewayError("invalid_request_error", f"request.{err.message}", param=f"request.{err.param}")
    param = f"request.{err.param}" if err.param else "request"
    return GatewayError("invalid_request_error", f"{param}: {err.message}", param=param)
