"""Pooled HTTP clients to upstream providers, with per-phase timeouts.

The phases, each from the provider's ``timeouts:``: ``connect`` (aiohttp's own), ``first_byte``
(request sent -> first body chunk of a stream), ``idle`` (longest gap between chunks) and
``total`` (request sent -> last byte; for a whole answer it also bounds the wait for headers).
Every failure is a ``timeout_error``, ``overloaded_error`` or ``api_error`` marked retryable:
before the client's first byte routing moves on to the next deployment, after it the relay ends
the stream with an error event; either way the deployment's breaker counts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp

from bytespike.config import ProviderConfig, Timeouts
from bytespike.errors import GatewayError
from bytespike.providers.base import UpstreamRequest, upstream_error

log = logging.getLogger("bytespike.providers.client")


class UpstreamResponse:
    """An upstream answer whose headers have arrived; its body is read within the phase deadlines
    counted from when the request was sent: first byte, idle gap between chunks, and total."""

    __slots__ = ("status", "headers", "_resp", "_timeouts", "_first_by", "_done_by")

    def __init__(self, resp: aiohttp.ClientResponse, timeouts: Timeouts, started: float) -> None:
        self._resp = resp
        self._timeouts = timeouts
        self._first_by = started + timeouts.first_byte
        self._done_by = started + timeouts.total
        self.status = resp.status
        self.headers = resp.headers

    async def read(self) -> bytes:
        """The whole body (a non-streamed answer or an error), within the total deadline."""
        try:
            async with asyncio.timeout_at(self._done_by):
                return await self._resp.read()
        except TimeoutError:
            raise _timeout(f"the upstream provider did not finish within {self._timeouts.total:g}s") from None
        except aiohttp.ClientError:
            raise GatewayError("api_error", "the upstream connection broke", retryable=True) from None
        finally:
            self._resp.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; raises a ``timeout_error`` when the first chunk is later than
        the first-byte deadline, a gap between chunks is longer than ``idle``, or the total runs
        out, and an ``api_error`` when the connection breaks."""
        loop = asyncio.get_running_loop()
        content = self._resp.content
        t = self._timeouts
        first = True
        try:
            while True:
                limit = min(self._first_by if first else loop.time() + t.idle, self._done_by)
                try:
                    async with asyncio.timeout_at(limit):
                        chunk = await content.readany()
                except TimeoutError:
                    if limit == self._done_by:
                        raise _timeout(f"the upstream provider did not finish within {t.total:g}s") from None
                    if first:
                        raise _timeout(f"the upstream provider did not start answering within {t.first_byte:g}s"
                                       ) from None
                    raise _timeout(f"the upstream stream stalled (no data for {t.idle:g}s)") from None
                except aiohttp.ClientError:
                    raise GatewayError("api_error", "the upstream stream was cut off", retryable=True) from None
                if not chunk:
                    return
                first = False
                yield chunk
        finally:
            self.close()

    def error(self, body: bytes) -> GatewayError:
        return upstream_error(self.status, body, self.headers.get("retry-after"))

    def close(self) -> None:
        self._resp.close()


def _timeout(message: str) -> GatewayError:
    return GatewayError("timeout_error", message, retryable=True)


class Upstreams:
    """One aiohttp session (one connection pool) per provider."""

    def __init__(self, providers: dict[str, ProviderConfig]) -> None:
        for name, p in providers.items():
            if not p.api_key:
                # Still called: a local or keyless endpoint may not need one; a vendor will answer
                # 401, which clients see as the gateway's credentials being refused.
                log.warning("provider %r has no api_key configured", name)
        self._providers = providers
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def _session(self, name: str) -> aiohttp.ClientSession:
        s = self._sessions.get(name)
        if s is None:
            p = self._providers[name]
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
            s = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, connect=p.timeouts.connect,
                                              sock_connect=p.timeouts.connect),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[name] = s
        return s

    async def open(self, provider: str, req: UpstreamRequest, *, stream: bool = True) -> UpstreamResponse:
        """Send ``req`` and wait for the answer's headers: within ``first_byte`` for a stream, within
        ``total`` for a whole answer (whose headers come only when it is done)."""
        p = self._providers[provider]
        session = self._session(provider)
        t = p.timeouts
        started = asyncio.get_running_loop().time()
        wait = min(t.first_byte, t.total) if stream else t.total
        try:
            async with asyncio.timeout(wait):
                resp = await session.post(req.url, data=req.body, headers=req.headers, allow_redirects=False)
        except aiohttp.ServerTimeoutError:  # aiohttp's own: the connect timeout
            raise _timeout(f"could not connect to the upstream provider within {t.connect:g}s") from None
        except TimeoutError:
            raise _timeout(f"the upstream provider did not answer within {wait:g}s") from None
        except aiohttp.ClientConnectorError:
            raise GatewayError("overloaded_error", "the upstream provider could not be reached", retryable=True) from None
        except aiohttp.ClientError:
            raise GatewayError("overloaded_error", "the upstream connection failed", retryable=True) from None
        return UpstreamResponse(resp, t, started)

    async def close(self) -> None:
        for s in self._sessions.values():
            await s.close()
        self._sessions.clear()
