"""Redeem codes: single use under a crowd, expiry, and what a code list shows."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx

from adminclient import Admin
from conftest import ADMIN_TOKEN, Gateway


async def _redeem_all(url: str, code: str, accounts: list[str]) -> list[httpx.Response]:
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    limits = httpx.Limits(max_connections=len(accounts))
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:
        start = asyncio.Event()

        async def one(account: str) -> httpx.Response:
            await start.wait()
            return await client.post(f"/admin/v1/wallets/{account}/redeem", json={"code": code})

        tasks = [asyncio.create_task(one(a)) for a in accounts]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))


def test_fifty_concurrent_redemptions_of_one_code_credit_exactly_once(gateway: Gateway) -> None:
    admin = Admin(gateway)
    t = secrets.token_hex(4)
    people = [f"r{i}-{t}@example.com" for i in range(10)]
    for p in people:
        admin.post("/users", {"email": p}, 201)
    (code,) = admin.post("/redeem-codes", {"usd": "12.34", "count": 1}, 201)["codes"]
    responses = asyncio.run(_redeem_all(gateway.url, code, people * 5))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 49, statuses
    assert all("already been used" in r.json()["error"]["message"] for r in responses if r.status_code == 409)
    winner = next(r.json() for r in responses if r.status_code == 200)
    credits = gateway.query("SELECT account_id, amount FROM ledger WHERE note LIKE ?", f"redeem code {code[:11]}%")
    assert len(credits) == 1 and credits[0][1] == 12_340_000_000
    balances = {p: admin.get(f"/wallets/{p}")["balance_usd"] for p in people}
    assert sorted(balances.values()) == ["0"] * 9 + ["12.34"] and balances[winner["account"]] == "12.34"
    listed = {c["id"]: c for c in admin.get("/redeem-codes", limit=200)["data"]}
    assert listed[winner["code_id"]]["status"] == "redeemed"
    assert code not in str(admin.get("/redeem-codes", limit=200))


def test_an_expired_code_is_refused_and_credits_nothing(gateway: Gateway) -> None:
    admin = Admin(gateway)
    email = f"late-{secrets.token_hex(4)}@example.com"
    admin.post("/users", {"email": email}, 201)
    (code,) = admin.post("/redeem-codes", {"usd": "5", "expires_in": "1s"}, 201)["codes"]
    time.sleep(1.2)
    got = admin.post(f"/wallets/{email}/redeem", {"code": code}, 409)
    assert "expired" in got["error"]["message"]
    assert admin.get(f"/wallets/{email}")["balance_usd"] == "0"
    assert admin.post(f"/wallets/{email}/redeem", {"code": "BYTS-NOTAREALCODE"}, 404)["error"]["type"] == \
        "not_found_error"


def test_codes_are_made_and_redeemed_from_the_cli_too(gateway: Gateway) -> None:
    import json

    email = f"cli-rc-{secrets.token_hex(4)}@example.com"
    gateway.cli("users", "create", email)
    made = json.loads(gateway.cli("redeem-codes", "create", "2.5", "--count", "3", "--json").stdout)
    assert len(made["codes"]) == 3 and all(c.startswith("BYTS-") for c in made["codes"])
    out = json.loads(gateway.cli("redeem-codes", "redeem", made["codes"][1].lower(), email, "--json").stdout)
    assert out["balance_usd"] == "2.5"
    again = gateway.cli("redeem-codes", "redeem", made["codes"][1], email, check=False)
    assert again.returncode == 1 and "already been used" in again.stderr
    listed = json.loads(gateway.cli("redeem-codes", "list", "--json").stdout)["redeem_codes"]
    mine = [c for c in listed if c["id"] in made["ids"]]
    assert sorted(c["status"] for c in mine) == ["open", "open", "redeemed"]
    assert "redeem code" in gateway.cli("wallet", "show", email).stdout
    log = json.loads(gateway.cli("audit", "--action", "redeem_code.redeem", "--json").stdout)["entries"]
    assert any(e["details"]["account"] == email and e["actor"].startswith("cli:") for e in log)
