"""Webhooks: where they may go, how they are signed, and their delivery with retries.

A delivery is the task object, signed ``bytespike-signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>`` with the account's secret, so a receiver can check both origin and age (a replay
carries an old ``t``). Non-2xx answers and network errors are retried with backoff for
``tasks.webhook_retry_seconds``; every attempt is logged in ``task_deliveries``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from bytespike.config import TasksConfig
from bytespike.errors import GatewayError, bad_request
from bytespike.store import tasks as store
from bytespike.store.db import Database

if TYPE_CHECKING:
    from bytespike.tasks.service import Tasks

log = logging.getLogger("bytespike.tasks.webhooks")

SIGNATURE_HEADER = "bytespike-signature"
MAX_URL = 2048
RETRY_FIRST = 1.0
RETRY_MAX = 3600.0


def sign(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _private(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def check_target(url: str, allow_private: bool, param: str = "webhook_url") -> None:
    """Refuse what is not an http(s) URL, and (unless allowed) anything that resolves to a private,
    loopback, link-local or otherwise non-public address. Checked at submission and at delivery."""
    if len(url) > MAX_URL:
        raise bad_request(f"{param}: longer than {MAX_URL} characters", param=param)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request(f"{param}: expected an http:// or https:// URL", param=param)
    if parts.username or parts.password:
        raise bad_request(f"{param}: must not carry credentials", param=param)
    if allow_private:
        return
    host = parts.hostname
    try:
        addrs = [host] if _is_ip(host) else await _resolve(host, parts.port)
    except OSError:
        raise bad_request(f"{param}: the host {host!r} does not resolve", param=param) from None
    if not addrs or any(_private(a) for a in addrs):
        raise bad_request(f"{param}: {host!r} is a private, loopback or link-local address; webhooks go to public "
                          "hosts (operators can allow internal receivers with tasks.allow_private_webhooks)",
                          param=param)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int | None) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    return [str(i[4][0]) for i in infos]


def retry_delay(attempt: int) -> float:
    """1 s, 2 s, 4 s ... capped at an hour."""
    return min(RETRY_FIRST * 2 ** max(attempt - 1, 0), RETRY_MAX)


class Deliverer:
    """Sends due webhooks; one loop per process, deliveries taken from the database under a lease."""

    def __init__(self, db: Database, cfg: TasksConfig, tasks: Tasks) -> None:
        self.db = db
        self.cfg = cfg
        self.tasks = tasks
        self.wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while True:
            try:
                await self._round()
            except (SQLAlchemyError, OSError):
                log.exception("taking due webhooks failed; retrying")
            try:
                await asyncio.wait_for(self.wake.wait(), self.cfg.poll_seconds)
            except TimeoutError:
                pass
            self.wake.clear()

    async def close(self) -> None:
        for t in list(self._inflight):
            t.cancel()
        if self._session is not None:
            await self._session.close()

    async def _round(self) -> None:
        room = 32 - len(self._inflight)
        if room <= 0:
            return
        now = time.time()
        async with self.tasks.write() as conn:
            due = await store.due_webhooks(conn, now, room, self.cfg.webhook_timeout_seconds * 3)
        for row in due:
            t = asyncio.create_task(self._deliver(row))
            self._inflight.add(t)
            t.add_done_callback(self._inflight.discard)

    async def _deliver(self, row: store.TaskRow) -> None:
        assert row.webhook_url is not None
        attempt = row.webhook_attempts  # counted when it was taken
        started = time.time()
        status: int | None = None
        error: str | None = None
        try:
            async with self.db.read() as conn:
                secret = await store.read_webhook_secret(conn, row.account_id)
            if secret is None:
                async with self.tasks.write() as conn:
                    secret = await store.webhook_secret(conn, row.account_id, started)
            body = await self.tasks.webhook_body(row)
            await check_target(row.webhook_url, self.cfg.allow_private_webhooks)
            t = int(time.time())
            if self._session is None:
                self._session = aiohttp.ClientSession()
            async with self._session.post(
                row.webhook_url, data=body, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.cfg.webhook_timeout_seconds),
                headers={"content-type": "application/json", SIGNATURE_HEADER: sign(secret, body, t),
                         "bytespike-task-id": row.id, "user-agent": "ByteSpike-Webhooks/1"},
            ) as resp:
                status = resp.status
                await resp.content.read(64 * 1024)  # the answer is not used; read a little of it at most
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except GatewayError as exc:  # the target is no longer allowed (it resolves elsewhere now)
            error = exc.message[:500]
        ok = status is not None and 200 <= status < 300
        finished = row.finished_at or started
        if ok:
            state, next_at = "delivered", None
        elif time.time() + retry_delay(attempt) > finished + self.cfg.webhook_retry_seconds:
            state, next_at = "failed", None
        else:
            state, next_at = "pending", time.time() + retry_delay(attempt)
        async with self.tasks.write() as conn:
            await store.record_delivery(conn, row.id, attempt, started, status_code=status, error=error,
                                        duration_ms=(time.time() - started) * 1000, state=state, next_at=next_at)
