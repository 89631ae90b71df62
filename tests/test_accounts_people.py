"""People as the console will use them: sign-up rules, argon2 hashes, sign-in and its throttle."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bytespike.accounts import passwords
from bytespike.accounts.errors import Actor, Conflict, Forbidden, Invalid, LoginFailed, Throttled
from bytespike.accounts.people import LOGIN_FAILURES_ALLOWED
from bytespike.accounts.services import Services
from bytespike.config import load
from bytespike.store.db import Database, upgrade
from conftest import BUILTIN


@pytest.fixture()
def services(tmp_path: Path) -> Iterator[Services]:
    """Services on a fresh database, driven from one event loop (the engine's connections live on it)."""
    url = f"sqlite:///{tmp_path / 'people.db'}"
    asyncio.run(upgrade(url))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    db = Database(url)
    yield Services(db, dataclasses.replace(load(BUILTIN), database_url=url))
    loop.run_until_complete(db.close())
    loop.close()
    asyncio.set_event_loop(None)


def run(coro: Any) -> Any:
    return asyncio.get_event_loop().run_until_complete(coro)


def email() -> str:
    return f"p{secrets.token_hex(4)}@example.com"


def test_sign_up_stores_an_argon2_hash_and_never_the_password(services: Services) -> None:
    e = email()
    user = run(services.people.sign_up(e, "a long enough secret"))
    assert user["has_password"] is True and "password_hash" not in user
    stored = run(_stored_hash(services, e))
    assert stored.startswith("$argon2id$") and "a long enough secret" not in stored
    assert passwords.verify_password("a long enough secret", stored)
    assert not passwords.verify_password("a long enough secreT", stored)


async def _stored_hash(s: Services, e: str) -> str:
    from bytespike.store import people
    async with s.db.read() as conn:
        return (await people.user_by_email(conn, e)).password_hash


@pytest.mark.parametrize("bad,why", [("short", "at least 8"), ("x" * 257, "at most 256"), ("password123", "common"),
                                     ("aaaaaaaaaaaa", "common"), (None, "required")])
def test_sign_up_refuses_passwords_that_break_the_rules(services: Services, bad: Any, why: str) -> None:
    with pytest.raises(Invalid) as exc:
        run(services.people.sign_up(email(), bad))
    assert exc.value.field == "password" and why in str(exc.value)


def test_a_password_equal_to_the_email_is_refused_and_a_taken_email_conflicts(services: Services) -> None:
    e = email()
    with pytest.raises(Invalid, match="email"):
        run(services.people.sign_up(e, e))
    run(services.people.sign_up(e, "another good one"))
    with pytest.raises(Conflict):
        run(services.people.sign_up(e.upper(), "another good one"))


def test_sign_in_returns_the_person_and_a_wrong_password_fails_without_saying_which(services: Services) -> None:
    e = email()
    run(services.people.sign_up(e, "right horse battery"))
    me = run(services.people.sign_in(e.upper(), "right horse battery", "10.0.0.1"))
    assert me["email"] == e and "password_hash" not in me
    for who, pw in ((e, "wrong horse battery"), ("nobody@example.com", "right horse battery")):
        with pytest.raises(LoginFailed) as exc:
            run(services.people.sign_in(who, pw, "10.0.0.1"))
        assert str(exc.value) == "wrong email or password"


def test_the_eleventh_wrong_password_in_a_minute_is_throttled_even_when_right(services: Services) -> None:
    e = email()
    run(services.people.sign_up(e, "right horse battery"))
    for _ in range(LOGIN_FAILURES_ALLOWED):
        with pytest.raises(LoginFailed):
            run(services.people.sign_in(e, "wrong", "10.0.0.2"))
    with pytest.raises(Throttled) as exc:
        run(services.people.sign_in(e, "right horse battery", "10.0.0.2"))
    assert 1 <= exc.value.retry_after <= 60
    # another address is not throttled for this email, and a success there clears nothing here
    assert run(services.people.sign_in(e, "right horse battery", "10.0.0.3"))["email"] == e
    with pytest.raises(Throttled):
        run(services.people.sign_in(e, "right horse battery", "10.0.0.2"))


def test_old_scrypt_hashes_still_sign_in_and_are_upgraded_to_argon2(services: Services) -> None:
    import base64
    import hashlib
    import os

    from bytespike.store import people

    e = email()
    run(services.people.create(Actor.operator("test"), e))
    salt = os.urandom(16)
    dk = hashlib.scrypt(b"legacy secret 1", salt=salt, n=2**14, r=8, p=1, dklen=32)
    legacy = f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"

    async def put() -> None:
        async with services.db.write() as conn:
            u = await people.user_by_email(conn, e)
            await people.set_password_hash(conn, u.id, legacy)
    run(put())
    run(services.people.sign_in(e, "legacy secret 1", "10.0.0.4"))
    assert run(_stored_hash(services, e)).startswith("$argon2id$")


def test_a_person_changes_only_their_own_password_giving_the_current_one(services: Services) -> None:
    a, b = email(), email()
    ua = run(services.people.sign_up(a, "first secret a"))
    run(services.people.sign_up(b, "first secret b"))
    me = Actor.person(ua["id"], a)
    with pytest.raises(Invalid, match="current"):
        run(services.people.set_password(me, a, "second secret a", current="nope"))
    with pytest.raises(Forbidden):
        run(services.people.set_password(me, b, "second secret b", current="first secret b"))
    run(services.people.set_password(me, a, "second secret a", current="first secret a"))
    assert run(services.people.sign_in(a, "second secret a", "10.0.0.5"))["email"] == a


def test_a_person_creating_an_org_owns_it_and_spends_from_its_wallet(services: Services) -> None:
    e = email()
    u = run(services.people.sign_up(e, "founder secret 1"))
    me = Actor.person(u["id"], e)
    org = run(services.orgs.create(me, f"startup-{secrets.token_hex(3)}"))
    assert [(m["email"], m["role"]) for m in org["members"]] == [(e, "owner")]
    assert run(services.wallets.show(me, None))["account"] == org["name"]
    with pytest.raises(Conflict):
        run(services.orgs.create(me, "second-org"))
    with pytest.raises(Forbidden):
        run(services.wallets.topup(me, None, "5"))
    assert run(services.keys.create(me, None))["group"] == "multi-vendor"


def test_with_sign_up_closed_only_an_invitation_lets_a_newcomer_in(tmp_path: Path) -> None:
    from bytespike import config

    url = f"sqlite:///{tmp_path / 'closed.db'}"
    asyncio.run(upgrade(url))
    text = BUILTIN.read_text().replace("accounts:\n", "accounts:\n  signup: closed\n", 1)
    settings = dataclasses.replace(config.parse(text, "closed.yaml", {}), database_url=url)
    assert settings.signup == "closed"

    async def scenario() -> None:
        db = Database(url)
        s = Services(db, settings)
        try:
            with pytest.raises(Forbidden, match="closed"):
                await s.people.sign_up("walk-in@example.com", "a good passphrase")
            op = Actor.operator("test")
            await s.orgs.create(op, "closed-org")
            inv = await s.orgs.invite(op, "closed-org", email="invited@example.com")
            with pytest.raises(Forbidden):
                await s.people.sign_up("someone-else@example.com", "a good passphrase", invite=inv["token"])
            user = await s.people.sign_up("invited@example.com", "a good passphrase", invite=inv["token"])
            joined = await s.orgs.accept(Actor.person(user["id"], user["email"]), inv["token"])
            assert joined["org"] == "closed-org" and joined["role"] == "member"
            assert (await s.people.create(op, "made-by-operator@example.com"))["email"].startswith("made")
        finally:
            await db.close()

    asyncio.run(scenario())
    with pytest.raises(config.ConfigError, match="signup"):
        config.parse(BUILTIN.read_text().replace("accounts:\n", "accounts:\n  signup: maybe\n", 1), "x.yaml", {})
