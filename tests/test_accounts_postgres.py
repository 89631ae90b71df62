"""The account services on PostgreSQL (a throwaway cluster): the same answers as on SQLite,
a code redeemed once under a crowd, and an audit log the database keeps append-only."""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bytespike.accounts.errors import Actor, Conflict
from bytespike.accounts.services import Services
from bytespike.config import load
from bytespike.store import payments
from bytespike.store.db import Database, upgrade
from conftest import BUILTIN, free_port


def _bin(name: str) -> str | None:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    return found


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    root = Path(tempfile.mkdtemp(prefix="bytespike-pg-"))
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        prefix = ["su", "postgres", "-s", "/bin/sh", "-c"]

    def run(*cmd: str) -> None:
        line = " ".join(cmd)
        subprocess.run([*prefix, line] if prefix else ["sh", "-c", line], check=True, capture_output=True,
                       timeout=120)

    run(initdb, "-D", f"{root}/data", "-A", "trust", "-U", "postgres")
    run(pg_ctl, "-D", f"{root}/data", "-w", "-l", f"{root}/log", "-o",
        f"'-p {port} -k {root} -c listen_addresses=127.0.0.1'", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", f"{root}/data", "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_people_orgs_money_and_audit_work_the_same_on_postgresql(pg_url: str) -> None:
    async def scenario() -> None:
        await upgrade(pg_url)
        db = Database(pg_url)
        s = Services(db, dataclasses.replace(load(BUILTIN), database_url=pg_url))
        op = Actor.operator("test")
        try:
            await s.people.create(op, "a@pg.test", "a fine passphrase")
            await s.orgs.create(op, "pgorg")
            await s.orgs.add_member(op, "pgorg", "o@pg.test", "owner")
            await s.orgs.add_member(op, "pgorg", "m@pg.test")
            assert (await s.wallets.topup(op, "pgorg", "10"))["balance_usd"] == "10"
            (code,) = (await s.redeem_codes.create(op, "3", 1, "7d"))["codes"]

            async def redeem() -> bool:
                try:
                    await s.redeem_codes.redeem(op, code, "a@pg.test")
                    return True
                except Conflict:
                    return False

            assert sum(await asyncio.gather(*(redeem() for _ in range(20)))) == 1
            assert (await s.wallets.show(op, "a@pg.test"))["balance_usd"] == "3"
            key = await s.keys.create(op, "m@pg.test", limits=["5h:usd=1"])
            assert key["group"] == "multi-vendor"
            owner = await s.people.get("o@pg.test")
            await s.keys.revoke(Actor.person(owner["id"], "o@pg.test"), key["id"])
            assert (await s.keys.page(op, "pgorg")).items[0]["status"] == "revoked"
            assert (await s.usage.summary(op, "pgorg", "1d"))["requests"] == 0
            assert await s.usage.daily(op, "pgorg", 3) == []
            assert (await s.people.sign_in("a@pg.test", "a fine passphrase", "1.2.3.4"))["email"] == "a@pg.test"
            async with db.write() as conn:
                assert await payments.first_delivery(conn, "evt_1", "x", 1.0)
                assert not await payments.first_delivery(conn, "evt_1", "x", 1.0)
            assert (await s.audit.page(op, 1)).items[0]["action"] == "user.sign_in"
            with pytest.raises(DBAPIError, match="append-only"):
                async with db.write() as conn:
                    await conn.execute(text("DELETE FROM audit_log"))
        finally:
            await db.close()

    asyncio.run(scenario())
