"""Pooled HTTP clients to upstream providers, with per-phase timeouts.

Failures before the first byte are raised as retryable ``GatewayError``s so routing can move on to
the next deployment; what happens after is the relay's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from .config import ProviderConfig, Timeouts
from .errors import GatewayError
from .providers.base import UpstreamRequest, upstream_error


class UpstreamResponse:
    __slots__ = ("status", "headers", "_resp", "_timeouts")

    def __init__(self, resp: aiohttp.ClientResponse, timeouts: Timeouts) -> None:
        self._resp = resp
        self._timeouts = timeouts
        self.status = resp.status
        self.headers = resp.headers

    async def read(self) -> bytes:
        try:
            async with asyncio.timeout(self._timeouts.total):
                return await self._resp.read()
        except TimeoutError:
            raise GatewayError("timeout_error", "the upstream provider timed out", retryable=True) from None
        except aiohttp.ClientError:
            raise GatewayError("api_error", "the upstream connection broke", retryable=True) from None
        finally:
            self._resp.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; raises GatewayError on an idle gap or a broken connection."""
        idle = self._timeouts.idle
        content = self._resp.content
        try:
            while True:
                try:
                    async with asyncio.timeout(idle):
                        chunk = await content.readany()
                except TimeoutError:
                    raise GatewayError("timeout_error", "the upstream stream stalled") from None
                except aiohttp.ClientError:
                    raise GatewayError("api_error", "the upstream stream was cut off") from None
                if not chunk:
                    return
                yield chunk
        finally:
            self.close()

    def error(self, body: bytes) -> GatewayError:
        return upstream_error(self.status, body, self.headers.get("retry-after"))

    def close(self) -> None:
        self._resp.close()


class Upstreams:
    """One aiohttp session (one connection pool) per provider."""

    def __init__(self, providers: dict[str, ProviderConfig]) -> None:
        self._providers = providers
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def _session(self, name: str) -> aiohttp.ClientSession:
        s = self._sessions.get(name)
        if s is None:
            p = self._providers[name]
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
            s = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=p.timeouts.connect),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[name] = s
        return s

    async def open(self, provider: str, req: UpstreamRequest) -> UpstreamResponse:
        p = self._providers[provider]
        if not p.api_key:
            raise GatewayError("api_error", f"provider {provider!r} has no API key configured", retryable=True)
        session = self._session(provider)
        try:
            async with asyncio.timeout(p.timeouts.first_byte):
                resp = await session.post(req.url, data=req.body, headers=req.headers, allow_redirects=False)
        except TimeoutError:
            raise GatewayError("timeout_error", "the upstream provider did not answer in time", retryable=True) from None
        except aiohttp.ClientConnectorError:
            raise GatewayError("overloaded_error", "the upstream provider could not be reached", retryable=True) from None
        except aiohttp.ClientError:
            raise GatewayError("overloaded_error", "the upstream connection failed", retryable=True) from None
        return UpstreamResponse(resp, p.timeouts)

    async def close(self) -> None:
        for s in self._sessions.values():
            await s.close()
        self._sessions.clear()
