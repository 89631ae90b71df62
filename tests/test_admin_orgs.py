"""Organizations: members spend from one wallet and it never goes below zero; owners manage
members and their keys, members see only their own (the services the console calls)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest

from adminclient import Admin
from bytespike.accounts.errors import Actor, Forbidden
from bytespike.accounts.services import Services
from bytespike.config import load
from bytespike.store.db import Database
from conftest import Gateway, run_async
from fakeupstream import FakeUpstream, json_answer


def answer(output: int, delay: float = 0.0) -> Any:
    return json_answer({"id": "msg_org", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                        "stop_sequence": None, "usage": {"input_tokens": 100, "output_tokens": output}},
                       delay_before=delay)


def as_person(gw: Gateway, email: str, fn: Any) -> Any:
    """Run ``fn(services, actor)`` as the signed-in person ``email``, on the gateway's database."""
    async def go() -> Any:
        db = Database(gw.db_url)
        try:
            s = Services(db, load(str(gw.config_path)))
            user = await s.people.get(email)
            return await fn(s, Actor.person(user["id"], email))
        finally:
            await db.close()
    return run_async(go())


def setup_org(gw: Gateway, usd: str) -> dict[str, Any]:
    admin = Admin(gw)
    t = secrets.token_hex(4)
    org, owner, m1, m2 = f"team-{t}", f"own-{t}@team.test", f"m1-{t}@team.test", f"m2-{t}@team.test"
    admin.post("/orgs", {"name": org}, 201)
    admin.post(f"/orgs/{org}/members", {"email": owner, "role": "owner"})
    for m in (m1, m2):
        admin.post(f"/orgs/{org}/members", {"email": m})
    admin.post(f"/wallets/{org}/topup", {"usd": usd})
    keys = {who: admin.post("/keys", {"account": who, "group": "claude-default"}, 201) for who in (owner, m1, m2)}
    return {"admin": admin, "org": org, "owner": owner, "m1": m1, "m2": m2, "keys": keys}


async def _fire(url: str, keys: list[str]) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as client:
        async def one(key: str) -> int:
            r = await client.post(url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                                  json={"model": "claude-haiku-4-5", "max_tokens": 1024,
                                        "messages": [{"role": "user", "content": "hi"}]})
            return r.status_code
        return list(await asyncio.gather(*(one(k) for k in keys)))


def test_two_members_spending_one_org_wallet_at_once_never_take_it_below_zero(gateway: Gateway,
                                                                             fake: FakeUpstream) -> None:
    o = setup_org(gateway, "0.03")
    fake.queue(*[answer(1000, delay=0.4) for _ in range(40)])
    keys = [o["keys"][o["m1"]]["key"], o["keys"][o["m2"]]["key"]] * 20
    statuses = asyncio.run(_fire(gateway.url, keys))
    assert set(statuses) <= {200, 402} and statuses.count(200) >= 2 and statuses.count(402) >= 1
    acct = o["admin"].get(f"/wallets/{o['org']}")
    gateway.wait_settled(count=len(statuses), account_id=gateway.query(
        "SELECT id FROM accounts WHERE name = ?", o["org"])[0][0])
    entries = gateway.query("SELECT amount, balance_after, kind FROM ledger WHERE account_id = "
                            "(SELECT id FROM accounts WHERE name = ?) ORDER BY id", o["org"])
    assert all(balance >= 0 for _, balance, _ in entries), entries
    charges = [a for a, _, kind in entries if kind == "charge"]
    assert len(charges) == statuses.count(200)
    assert sum(charges) == -(100 * 1000 + 1000 * 5000) * statuses.count(200)
    acct = o["admin"].get(f"/wallets/{o['org']}")
    assert acct["held_usd"] == "0" and not acct["balance_usd"].startswith("-")
    usage = o["admin"].get("/usage", account=o["org"], since="1h")
    assert usage["requests"] == len(statuses)


def test_an_owner_revokes_a_members_key_and_the_next_request_with_it_gets_401(gateway: Gateway) -> None:
    o = setup_org(gateway, "5")
    key = o["keys"][o["m1"]]
    ok = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key["key"], "anthropic-version": "2023-06-01"},
                    json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]})
    assert ok.status_code == 200
    as_person(gateway, o["owner"], lambda s, me: s.keys.revoke(me, key["id"]))
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key["key"], "anthropic-version": "2023-06-01"},
                   json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    audit = o["admin"].get("/audit", action="key.revoke", target=key["id"])["data"]
    assert [e["actor"] for e in audit] == [f"user:{o['owner']}"]


def test_a_member_sees_only_their_own_keys_and_usage_and_cannot_revoke_anothers(gateway: Gateway) -> None:
    o = setup_org(gateway, "5")
    own_keys = as_person(gateway, o["m1"], lambda s, me: s.keys.page(me, None))
    assert [k["id"] for k in own_keys.items] == [o["keys"][o["m1"]]["id"]]
    all_keys = as_person(gateway, o["owner"], lambda s, me: s.keys.page(me, None))
    assert {k["id"] for k in all_keys.items} == {k["id"] for k in o["keys"].values()}
    with pytest.raises(Forbidden):
        as_person(gateway, o["m1"], lambda s, me: s.keys.revoke(me, o["keys"][o["m2"]]["id"]))
    with pytest.raises(Forbidden):
        as_person(gateway, o["m1"], lambda s, me: s.usage.summary(me, None, "1d", member=o["m2"]))
    with pytest.raises(Forbidden):
        as_person(gateway, o["m1"], lambda s, me: s.orgs.add_member(me, o["org"], "new@team.test"))
    with pytest.raises(Forbidden):
        as_person(gateway, o["m1"], lambda s, me: s.wallets.show(me, o["owner"].replace("own", "someone")))
    mine = as_person(gateway, o["m1"], lambda s, me: s.usage.summary(me, None, "1d"))
    assert [k["id"] for k in mine["keys"]] == [o["keys"][o["m1"]]["id"]]
    theirs = as_person(gateway, o["owner"], lambda s, me: s.usage.summary(me, None, "1d", member=o["m2"]))
    assert [k["id"] for k in theirs["keys"]] == [o["keys"][o["m2"]]["id"]]


def test_an_owner_removes_a_member_whose_org_keys_stop_working(gateway: Gateway) -> None:
    o = setup_org(gateway, "5")
    key = o["keys"][o["m2"]]
    res = as_person(gateway, o["owner"], lambda s, me: s.orgs.remove_member(me, o["org"], o["m2"]))
    assert res["revoked_keys"] == [key["id"]]
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key["key"], "anthropic-version": "2023-06-01"},
                   json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]})
    assert r.status_code == 401
    assert o["admin"].get(f"/wallets/{o['m2']}")["account"] == o["m2"]  # back on their own wallet
    members = {m["email"] for m in o["admin"].get(f"/orgs/{o['org']}")["members"]}
    assert members == {o["owner"], o["m1"]}
    last = o["admin"].call("DELETE", f"/orgs/{o['org']}/members/{o['owner']}", 409)
    assert "at least one owner" in last["error"]["message"]


def test_group_policy_comes_from_the_config_per_kind_of_account(gateway: Gateway) -> None:
    admin = Admin(gateway)
    groups = admin.get("/groups")
    assert groups["tiers"]["personal"]["default_group"] == "claude-default"
    assert groups["tiers"]["org"]["default_group"] == "multi-vendor"
    email = f"solo-{secrets.token_hex(4)}@example.com"
    admin.post("/users", {"email": email}, 201)
    assert admin.post("/keys", {"account": email}, 201)["group"] == "claude-default"


def test_an_invite_link_lets_a_newcomer_join_once_and_spend_from_the_org_wallet(gateway: Gateway) -> None:
    o = setup_org(gateway, "5")
    inv = o["admin"].post(f"/orgs/{o['org']}/invites", {"role": "member"}, 201)
    assert inv["token"].startswith("inv_") and inv["org"] == o["org"]
    newcomer = f"new-{secrets.token_hex(4)}@team.test"

    async def join(s: Services, token: str) -> Any:
        offer = await s.orgs.invitation(token)
        user = await s.people.sign_up(newcomer, "joining secret 1")
        me = Actor.person(user["id"], newcomer)
        return offer, await s.orgs.accept(me, token)

    offer, joined = as_person(gateway, o["owner"], lambda s, _: join(s, inv["token"]))
    assert offer["org"] == o["org"] and joined["role"] == "member"
    assert as_person(gateway, newcomer, lambda s, me: s.wallets.show(me, None))["account"] == o["org"]
    key = as_person(gateway, newcomer, lambda s, me: s.keys.create(me, None, group="claude-default"))
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key["key"], "anthropic-version": "2023-06-01"},
                   json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]})
    assert r.status_code == 200
    from bytespike.accounts.errors import NotFound
    with pytest.raises(NotFound):
        as_person(gateway, o["m1"], lambda s, me: s.orgs.accept(me, inv["token"]))  # single use
    with pytest.raises(Forbidden):
        as_person(gateway, o["m1"], lambda s, me: s.orgs.invite(me, o["org"]))  # members do not invite
