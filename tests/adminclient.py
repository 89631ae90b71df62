"""An admin API client for tests that keeps every answer, so a test can scan them all for secrets."""

from __future__ import annotations

import re
from typing import Any

import httpx

from conftest import ADMIN_TOKEN, Gateway

_HASH_LIKE = re.compile(r"\$argon2|scrypt\$")


class Admin:
    def __init__(self, gw: Gateway, token: str = ADMIN_TOKEN) -> None:
        self.gw = gw
        self.http = httpx.Client(base_url=gw.url + "/admin/v1", headers={"authorization": f"Bearer {token}"},
                                 timeout=60)
        self.seen: list[str] = []

    def call(self, method: str, path: str, expect: int | None = 200, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        self.seen.append(r.text)
        if expect is not None:
            assert r.status_code == expect, (method, path, r.status_code, r.text)
        return r.json()

    def get(self, path: str, expect: int | None = 200, **params: Any) -> Any:
        return self.call("GET", path, expect, params=params or None)

    def post(self, path: str, body: Any, expect: int | None = 200) -> Any:
        return self.call("POST", path, expect, json=body)

    def secrets(self) -> list[str]:
        """Everything that must never appear in an admin answer: stored hashes and upstream keys."""
        hashes = [r[0] for r in self.gw.query("SELECT key_hash FROM api_keys")]
        hashes += [r[0] for r in self.gw.query("SELECT password_hash FROM users WHERE password_hash IS NOT NULL")]
        hashes += [r[0] for r in self.gw.query("SELECT code_hash FROM redeem_codes")]
        return hashes + ["upstream-secret-"]

    def assert_no_secrets(self, texts: list[str] | None = None) -> None:
        secrets = self.secrets()
        for text in self.seen if texts is None else texts:
            assert not _HASH_LIKE.search(text), text[:300]
            for s in secrets:
                assert s not in text, (s[:12], text[:300])
