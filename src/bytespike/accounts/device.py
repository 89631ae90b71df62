"""Device sign-in (OAuth 2.0 device authorization grant, RFC 8628) for Claude Code's gateway login.

The terminal asks for a device code, the person opens the verification page, signs in and
approves; the terminal's polling then gets an access token and a refresh token. The access token
is an ordinary gateway key of that person (expiring), so it works on every endpoint, spends the
person's wallet and windows, and is revoked like any key. Refresh tokens rotate: each works once,
and a second use of an old one revokes the whole sign-in (a stolen copy is then worthless).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from bytespike.accounts import keys as key_codec
from bytespike.store import oauth as books
from bytespike.store.accounts import Accounts

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels, no look-alikes (RFC 8628 section 6.1)


class OAuthError(Exception):
    """An RFC 6749 / 8628 error: ``error`` is the code clients switch on."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True, slots=True)
class SignInPolicy:
    group: str = "claude-default"
    device_code_seconds: int = 600
    interval: int = 5
    access_seconds: int = 3600
    refresh_seconds: int = 30 * 86400


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_user_code(code: str) -> str:
    """What people type: any case, with or without the dash or spaces."""
    letters = "".join(c for c in code.upper() if c.isalnum())
    return f"{letters[:4]}-{letters[4:8]}" if len(letters) == 8 else letters


class DeviceSignIn:
    def __init__(self, people: Accounts, policy: SignInPolicy) -> None:
        self.people = people
        self.db = people.db
        self.policy = policy

    async def start(self, client_id: str, scope: str) -> dict[str, Any]:
        """A new pending grant: the device code (secret, for the terminal) and the user code."""
        if not client_id or len(client_id) > 200:
            raise OAuthError("invalid_client", "client_id is required (at most 200 characters)")
        device_code = secrets.token_urlsafe(32)
        now = time.time()
        for _ in range(5):
            letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
            user_code = f"{letters[:4]}-{letters[4:]}"
            async with self.db.write() as conn:
                if await books.grant_by_user_code(conn, user_code) is not None:
                    continue
                await books.add_grant(conn, {
                    "device_hash": _hash(device_code), "user_code": user_code, "client_id": client_id,
                    "scope": scope[:400], "created_at": now, "expires_at": now + self.policy.device_code_seconds,
                    "interval": self.policy.interval, "last_poll_at": None, "status": "pending",
                    "user_id": None, "account_id": None, "group_name": None})
            return {"device_code": device_code, "user_code": user_code, "expires_in": self.policy.device_code_seconds,
                    "interval": self.policy.interval}
        raise OAuthError("server_error", "could not allocate a user code", status=500)

    async def pending(self, user_code: str) -> Any:
        """The grant a person is about to approve, if it is still waiting."""
        async with self.db.read() as conn:
            grant = await books.grant_by_user_code(conn, normalize_user_code(user_code))
        if grant is None or grant.status != "pending" or grant.expires_at <= time.time():
            return None
        return grant

    async def approve(self, user_code: str, user_id: str, account_id: str, group: str | None = None) -> bool:
        grant = await self.pending(user_code)
        if grant is None:
            return False
        async with self.db.write() as conn:
            return await books.update_grant(conn, grant.device_hash, "pending", status="approved", user_id=user_id,
                                            account_id=account_id, group_name=group or self.policy.group)

    async def deny(self, user_code: str) -> bool:
        grant = await self.pending(user_code)
        if grant is None:
            return False
        async with self.db.write() as conn:
            return await books.update_grant(conn, grant.device_hash, "pending", status="denied")

    async def exchange_device(self, device_code: str, client_id: str) -> dict[str, Any]:
        """The terminal's poll: tokens once approved, else the RFC 8628 error saying why not yet."""
        now = time.time()
        device_hash = _hash(device_code)
        refusal: OAuthError | None = None
        async with self.db.write() as conn:  # a refusal is raised after commit: the poll time must stick
            grant = await books.grant_by_device(conn, device_hash)
            if grant is None or grant.client_id != client_id:
                refusal = OAuthError("invalid_grant", "unknown device code")
            elif grant.expires_at <= now and grant.status in ("pending", "approved"):
                refusal = OAuthError("expired_token", "the device code expired; start the sign-in again")
            elif grant.status == "denied":
                refusal = OAuthError("access_denied", "the sign-in was refused")
            elif grant.status == "used":
                refusal = OAuthError("invalid_grant", "this device code was already exchanged")
            elif grant.status == "pending":
                too_soon = grant.last_poll_at is not None and now - grant.last_poll_at < grant.interval
                await books.touch_poll(conn, device_hash, now)
                refusal = (OAuthError("slow_down", f"poll at most every {grant.interval} seconds") if too_soon
                           else OAuthError("authorization_pending", "waiting for the person to approve the sign-in"))
            elif not await books.update_grant(conn, device_hash, "approved", status="used"):
                refusal = OAuthError("invalid_grant", "this device code was already exchanged")
        if refusal is not None:
            raise refusal
        assert grant is not None
        return await self._issue(grant.user_id, grant.account_id, grant.group_name, client_id, None, grant.scope)

    async def refresh(self, refresh_token: str, client_id: str | None) -> dict[str, Any]:
        now = time.time()
        token_hash = _hash(refresh_token)
        async with self.db.write() as conn:
            row = await books.refresh_by_hash(conn, token_hash)
            if row is None or (client_id and row.client_id != client_id):
                raise OAuthError("invalid_grant", "unknown refresh token")
            if row.revoked_at is not None or row.expires_at <= now:
                raise OAuthError("invalid_grant", "this sign-in has ended; sign in again")
            if not await books.user_exists(conn, row.user_id):
                raise OAuthError("invalid_grant", "this person no longer has access; sign in again")
            if not await books.use_refresh(conn, token_hash, now):
                # An old token used again: someone else may hold a copy. End the whole sign-in.
                stale = await books.revoke_family(conn, row.family, now)
                replayed = True
            else:
                replayed = False
        if replayed:
            for key_id in stale:
                await self.people.revoke_key(key_id)
            raise OAuthError("invalid_grant", "this refresh token was already used; the sign-in was ended")
        await self.people.revoke_key(row.key_id)
        return await self._issue(row.user_id, row.account_id, row.group_name, row.client_id, row.family, "")

    async def revoke_person(self, user_id: str) -> int:
        """End every device sign-in of a person: their refresh tokens and the keys issued with them."""
        async with self.db.write() as conn:
            key_ids = await books.revoke_user(conn, user_id, time.time())
        for key_id in key_ids:
            await self.people.revoke_key(key_id)
        return len(key_ids)

    async def _issue(self, user_id: str, account_id: str, group: str, client_id: str, family: str | None,
                     scope: str) -> dict[str, Any]:
        now = time.time()
        key, digest, prefix = key_codec.mint()
        record = await self.people.create_key(account_id, digest, prefix, group, user_id=user_id,
                                              name=f"sign-in: {client_id}"[:200],
                                              expires_at=now + self.policy.access_seconds)
        refresh = "bsr_" + secrets.token_urlsafe(32)
        async with self.db.write() as conn:
            await books.add_refresh(conn, {
                "token_hash": _hash(refresh), "family": family or "fam_" + secrets.token_hex(12),
                "key_id": record.id, "user_id": user_id, "account_id": account_id, "group_name": group,
                "client_id": client_id, "created_at": now, "expires_at": now + self.policy.refresh_seconds,
                "used_at": None, "revoked_at": None})
        out: dict[str, Any] = {"access_token": key, "token_type": "Bearer", "expires_in": self.policy.access_seconds,
                               "refresh_token": refresh}
        if scope:
            out["scope"] = scope
        return out
