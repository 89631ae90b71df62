"""The gateway's link to Redis: one client, whether Redis is reachable now, and the key-change channel.

Every instance talks to the same Redis for what must be shared and fast (``billing/shared.py``).
When a call fails the link marks Redis down, so requests stop waiting on it and the configured
policy answers for them; a watcher pings it every quarter second and, once it answers, marks it
up and runs the recovery callbacks (replaying what could not be written meanwhile). Nothing
here is the source of truth: PostgreSQL is, and Redis's state is rebuilt from it.

Key changes (revocations, new keys) are broadcast on a pub/sub channel; every instance drops its
key cache when a message arrives, and also whenever its subscription was down, since it may have
missed one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions as rexc
from redis.asyncio import Redis

log = logging.getLogger("bytespike.store.redis")

KEY_CHANNEL = "bytespike:keys"
RETRY_SECONDS = 0.25
T = TypeVar("T")
FAILURES = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, OSError)


class Unreachable(RuntimeError):
    """Redis cannot be reached now (the link retries in the background)."""


def client(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0, retry_on_timeout=False,
                          decode_responses=True)


async def announce_key_change(url: str, key_id: str) -> None:
    """Tell every instance that a key changed (from the CLI or any process without a link)."""
    r = client(url)
    try:
        await r.publish(KEY_CHANNEL, key_id)
    finally:
        await r.aclose()


class RedisLink:
    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = client(url)
        self.up = True
        self.subscribed = False
        self.on_recover: list[Callable[[], Awaitable[None]]] = []
        self.on_key_change: list[Callable[[], None]] = []
        self._down = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            await self.redis.ping()
        except FAILURES as exc:
            log.error("Redis at %s is unreachable (%s); retrying in the background", _safe(self.url), exc)
            self._mark_down()
        self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._subscribe())]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks = []
        await self.redis.aclose()

    async def call(self, fn: Callable[[Redis], Awaitable[T]]) -> T:
        """``fn(redis)``, or Unreachable at once while Redis is known to be down."""
        if not self.up:
            raise Unreachable("Redis is unreachable")
        try:
            return await fn(self.redis)
        except FAILURES as exc:
            self._mark_down()
            raise Unreachable(f"Redis is unreachable: {exc}") from exc

    async def publish_key_change(self, key_id: str) -> None:
        await self.call(lambda r: r.publish(KEY_CHANNEL, key_id))

    def _mark_down(self) -> None:
        if self.up:
            log.error("lost Redis at %s; retrying every %.2f s", _safe(self.url), RETRY_SECONDS)
        self.up = False
        self._down.set()

    async def _watch(self) -> None:
        while True:
            await self._down.wait()
            while not self.up:
                await asyncio.sleep(RETRY_SECONDS)
                try:
                    await self.redis.ping()
                except FAILURES:
                    continue
                self.up = True
                self._down.clear()
                log.warning("Redis at %s is back", _safe(self.url))
                for fn in self.on_recover:
                    try:
                        await fn()
                    except (Unreachable, *FAILURES):
                        log.exception("recovery after Redis came back failed; retrying")
                        self._mark_down()
                        break

    async def _subscribe(self) -> None:
        while True:
            pubsub: Any = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(KEY_CHANNEL)
                self.subscribed = True
                self._key_changed()  # anything missed while not subscribed
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._key_changed()
            except FAILURES:
                self.subscribed = False
                self._key_changed()
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                self.subscribed = False
                try:
                    await pubsub.aclose()
                except FAILURES:
                    pass

    def _key_changed(self) -> None:
        for fn in self.on_key_change:
            fn()


def _safe(url: str) -> str:
    """The URL without a password."""
    return url.split("@")[-1]
