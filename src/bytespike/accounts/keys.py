"""API keys: minting, hashing, and the per-request lookup.

Keys are ``sk-byts-`` + 43 URL-safe random characters (256 bits), shown once and stored only as a
SHA-256 digest: with that much entropy a slow password hash adds nothing but latency.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass

from bytespike.errors import GatewayError
from bytespike.store.accounts import Accounts, KeyRecord, key_from_row
from bytespike.store.db import Database, sqlite_path
from bytespike.store.redis import RedisLink

PREFIX = "sk-byts-"


def mint() -> tuple[str, str, str]:
    """A new key: (the key itself, its hash, a short prefix safe to display)."""
    key = PREFIX + secrets.token_urlsafe(32)
    return key, digest(key), key[:14]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_from_headers(headers: dict[bytes, bytes]) -> str | None:
    for name in (b"x-api-key", b"x-goog-api-key"):
        raw = headers.get(name)
        if raw:
            return raw.decode("latin-1").strip()
    auth = headers.get(b"authorization")
    if auth and auth[:7].lower() == b"bearer ":
        return auth[7:].decode("latin-1").strip()
    return None


@dataclass(slots=True)
class _Cached:
    record: KeyRecord | None
    at: float


class KeyLookup:
    """Finds the key behind a request.

    On SQLite lookups are cached until a key changes: every change bumps a counter beside the
    database that each process reads from shared memory on every request, so a revocation by
    another process (the CLI) takes effect on the very next request, and a lookup costs no
    database call. Elsewhere, with Redis, lookups are cached until a key change is broadcast on
    its channel (and for ``ttl`` seconds only while that subscription is down, when a message
    could be missed); without Redis for ``ttl`` seconds, so a revocation holds within a second.
    """

    def __init__(self, db: Database, accounts: Accounts, ttl: float = 0.5, link: RedisLink | None = None) -> None:
        self._accounts = accounts
        self._ttl = ttl
        self._link = link
        if link is not None:
            link.on_key_change.append(self.forget)
        self._cache: dict[str, _Cached] = {}
        self._sqlite: sqlite3.Connection | None = None
        self._sqlite_file = sqlite_path(db.url)
        self._version: int | None = None
        self._changes = db.key_changes if self._sqlite_file else None

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()

    async def find(self, key: str) -> KeyRecord | None:
        h = digest(key)
        if self._changes is not None:
            version = self._changes.value()
            if version != self._version:
                self._version = version
                self._cache.clear()
            cached = self._cache.get(h)
            if cached is not None:
                return cached.record
            if self._sqlite is None:
                self._sqlite = sqlite3.connect(f"file:{self._sqlite_file}?mode=ro", uri=True, check_same_thread=False)
                self._sqlite.row_factory = sqlite3.Row
            row = self._sqlite.execute("SELECT * FROM api_keys WHERE key_hash = ?", (h,)).fetchone()
            record = _RowKey.record(row) if row is not None else None
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[h] = _Cached(record, 0.0)
            return record
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit is not None and (now - hit.at < self._ttl or (self._link is not None and self._link.subscribed)):
            return hit.record
        record = await self._accounts.key_by_hash(h)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[h] = _Cached(record, now)
        return record

    def forget(self) -> None:
        self._cache.clear()

    async def authenticate(self, headers: dict[bytes, bytes], query_key: str | None = None) -> KeyRecord:
        """``query_key``: a key the protocol lets clients send in the URL (Gemini's ``?key=``)."""
        key = key_from_headers(headers) or (query_key.strip() if query_key else None)
        if not key:
            raise GatewayError(
                "authentication_error",
                "missing API key: send it in the x-api-key header or as Authorization: Bearer "
                "(on Gemini routes also in x-goog-api-key or ?key=)",
            )
        record = await self.find(key) if key.startswith(PREFIX) else None
        if record is None:
            raise GatewayError("authentication_error", "invalid API key")
        if record.revoked_at is not None:
            raise GatewayError("authentication_error", "this API key has been revoked")
        if record.expires_at is not None and record.expires_at <= time.time():
            raise GatewayError("authentication_error", "this API key has expired")
        return record


class _RowKey:
    """Adapts a sqlite3.Row to the attribute access key_from_row expects."""

    __slots__ = ("_row",)

    def __init__(self, row: sqlite3.Row) -> None:
        self._row = row

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return self._row[name]

    @classmethod
    def record(cls, row: sqlite3.Row) -> KeyRecord:
        return key_from_row(cls(row))
