"""The admin API end to end: people, an org, money in, keys, requests, usage and the audit log,
all through ``/admin/v1`` on a real gateway, checked against the CLI's own numbers."""

from __future__ import annotations

import json
import secrets
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest

from adminclient import Admin
from conftest import ADMIN_TOKEN, Gateway
from conftest import test_config as gateway_config
from fakeupstream import FakeUpstream, json_answer

NANO = 10**9


def haiku(input: int, output: int) -> Any:
    return json_answer({"id": "msg_admin", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                        "stop_sequence": None, "usage": {"input_tokens": input, "output_tokens": output}})


def haiku_cost(input: int, output: int) -> int:
    return input * 1000 + output * 5000  # claude-haiku-4-5: 1 and 5 USD per million tokens, in nano-USD


def ask(gw: Gateway, key: str, model: str = "claude-haiku-4-5") -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      json={"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
                      timeout=30)


def tag() -> str:
    return secrets.token_hex(4)


def test_a_user_and_an_org_are_set_up_funded_and_used_through_the_admin_api_alone(gateway: Gateway,
                                                                                  fake: FakeUpstream) -> None:
    admin = Admin(gateway)
    t = tag()
    ada, owner, member, org = f"ada-{t}@example.com", f"olga-{t}@acme.test", f"max-{t}@acme.test", f"acme-{t}"

    user = admin.post("/users", {"email": ada, "password": "correct horse battery"}, 201)
    assert user["email"] == ada and user["has_password"] is True and user["org"] is None
    created = admin.post("/orgs", {"name": org}, 201)
    assert created["name"] == org and created["members"] == []
    assert admin.post(f"/orgs/{org}/members", {"email": owner, "role": "owner"})["role"] == "owner"
    assert admin.post(f"/orgs/{org}/members", {"email": member, "role": "member"})["role"] == "member"
    shown = admin.get(f"/orgs/{org}")
    assert {(m["email"], m["role"]) for m in shown["members"]} == {(owner, "owner"), (member, "member")}

    topped = admin.post(f"/wallets/{org}/topup", {"usd": "20", "note": "invoice 12"})
    assert topped == {"account": org, "amount_usd": "20", "balance_usd": "20"}
    codes = admin.post("/redeem-codes", {"usd": "7.5", "count": 2, "expires_in": "7d"}, 201)
    assert len(codes["codes"]) == 2 and len(set(codes["codes"])) == 2 and codes["usd"] == "7.5"
    redeemed = admin.post(f"/wallets/{ada}/redeem", {"code": codes["codes"][0]})
    assert redeemed["amount_usd"] == "7.5" and redeemed["balance_usd"] == "7.5"
    again = admin.post(f"/wallets/{ada}/redeem", {"code": codes["codes"][0]}, 409)
    assert again["error"]["type"] == "invalid_request_error" and "already been used" in again["error"]["message"]

    ada_key = admin.post("/keys", {"account": ada, "group": "claude-default", "name": "laptop",
                                   "limits": ["5h:usd=3,requests=50", {"window": "7d", "tokens": 90000}],
                                   "max_concurrency": 2}, 201)
    assert ada_key["key"].startswith("sk-byts-") and ada_key["limits"] == ["5h:usd=3,requests=50", "7d:tokens=90000"]
    member_key = admin.post("/keys", {"account": member, "name": "ci"}, 201)
    assert member_key["group"] == "multi-vendor" and member_key["account"] == org  # the org tier's default
    owner_key = admin.post("/keys", {"account": owner, "group": "claude-default"}, 201)

    fake.queue(haiku(1000, 200), haiku(3000, 100), haiku(500, 50))
    rids = [ask(gateway, k["key"]).headers["request-id"] for k in (ada_key, member_key, owner_key)]
    c = anthropic.Anthropic(base_url=gateway.url, api_key=ada_key["key"], max_retries=0)
    assert c.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    gateway.wait_settled(rids)

    usage = admin.get("/usage", account=ada, since="1d")
    gateway.wait_settled(count=2, account_id=user["account_id"])
    usage = admin.get("/usage", account=ada, since="1d")
    cli_usage = json.loads(gateway.cli("usage", ada, "--since", "1d", "--json").stdout)
    assert usage == cli_usage and usage["requests"] == 2
    (k,) = usage["keys"]
    windows = {w["window"]: w for w in k["windows"]}
    assert windows["5h"]["usd_cap"] == "3" and windows["5h"]["requests"] == 2 and windows["7d"]["tokens_cap"] == 90000

    org_usage = admin.get("/usage", account=org, since="1d")
    assert org_usage == json.loads(gateway.cli("usage", org, "--since", "1d", "--json").stdout)
    assert Decimal(org_usage["total_usd"]) * NANO == haiku_cost(3000, 100) + haiku_cost(500, 50)
    mine = admin.get("/usage", account=org, since="1d", member=member)
    assert Decimal(mine["total_usd"]) * NANO == haiku_cost(3000, 100) and [x["id"] for x in mine["keys"]] == [
        member_key["id"]]

    wallet = admin.get(f"/wallets/{org}/topup")
    assert wallet == admin.get(f"/wallets/{org}")
    assert wallet == json.loads(gateway.cli("wallet", "show", org, "--json").stdout)
    assert Decimal(wallet["balance_usd"]) * NANO == 20 * NANO - haiku_cost(3000, 100) - haiku_cost(500, 50)
    daily = admin.get("/usage/daily", account=org, days=1)["data"]
    assert [(d["model"], d["requests"], d["output_tokens"]) for d in daily] == [("claude-haiku-4-5", 2, 150)]
    assert Decimal(daily[0]["cost_usd"]) == Decimal(org_usage["total_usd"])
    records = admin.get("/usage/records", account=org, since="1d")
    assert {r["request_id"] for r in records["data"]} == set(rids[1:])

    entries = admin.get("/audit", limit=200)["data"]
    mine_only = [e for e in entries if t in e["target"] or t in json.dumps(e["details"])
                 or e["target"] in (ada_key["id"], member_key["id"], owner_key["id"])]
    actions = {e["action"] for e in mine_only}
    assert {"user.create", "org.create", "org.member.add", "wallet.topup", "redeem_code.redeem",
            "key.create"} <= actions
    assert all(e["actor"] == "admin-api" and e["created_at"] > 0 for e in mine_only)
    cli_audit = json.loads(gateway.cli("audit", "--limit", "200", "--json").stdout)["entries"]
    assert [e["id"] for e in cli_audit][:len(entries)] == [e["id"] for e in entries][:len(cli_audit)]
    admin.assert_no_secrets()


def test_lists_are_paginated_by_cursor_without_gaps_or_repeats(gateway: Gateway) -> None:
    admin = Admin(gateway)
    email = f"pages-{tag()}@example.com"
    admin.post("/users", {"email": email}, 201)
    made = [admin.post("/keys", {"account": email, "name": f"k{i}"}, 201)["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"account": email, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = admin.get("/keys", **params)
        assert len(page["data"]) <= 2 and page["has_more"] == (page["next_cursor"] is not None)
        seen += [k["id"] for k in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    bad = admin.get("/keys", 400, account=email, cursor="not-a-cursor")
    assert "cursor" in bad["error"]["message"]


def test_bad_inputs_get_400s_that_name_the_field(gateway: Gateway) -> None:
    admin = Admin(gateway)
    email = f"bad-{tag()}@example.com"
    admin.post("/users", {"email": email}, 201)
    cases = [
        ("/users", {"email": "not-an-email"}, "email"),
        ("/users", {"email": f"x{tag()}@example.com", "password": "short"}, "password"),
        ("/users", {"email": f"y{tag()}@example.com", "surprise": 1}, "surprise"),
        ("/keys", {"account": email, "group": "no-such-group"}, "group"),
        ("/keys", {"account": email, "limits": ["5x:usd=1"]}, "limits[0]"),
        ("/keys", {"account": email, "max_concurrency": 0}, "max_concurrency"),
        (f"/wallets/{email}/topup", {"usd": "-3"}, "usd"),
        (f"/wallets/{email}/topup", {"usd": "0.0000000001"}, "usd"),
        ("/redeem-codes", {"usd": "5", "count": 0}, "count"),
        ("/redeem-codes", {"usd": "5", "expires_in": "soon"}, "expires_in"),
    ]
    for path, body, field in cases:
        got = admin.post(path, body, 400)
        assert got["type"] == "error" and got["error"]["type"] == "invalid_request_error"
        assert field in got["error"]["message"], (path, body, got)
    assert admin.post("/users", {"email": email}, 409)["error"]["message"].endswith("already exists")
    assert admin.get("/wallets/nobody@nowhere.test", 404)["error"]["type"] == "not_found_error"
    assert admin.post("/keys/key_nope/revoke", {}, 404)["error"]["type"] == "not_found_error"
    r = httpx.post(gateway.url + "/admin/v1/users", content=b"{not json", timeout=10,
                   headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.delete(gateway.url + "/admin/v1/users", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"


ADMIN_PATHS = [("GET", "/admin/v1/users"), ("POST", "/admin/v1/users"), ("GET", "/admin/v1/openapi.json"),
               ("GET", "/admin/v1/audit"), ("POST", "/admin/v1/keys"), ("GET", "/admin/v1/providers"),
               ("POST", "/admin/v1/redeem-codes"), ("GET", "/admin/v1/wallets/a@b.c"), ("GET", "/admin/v1/nope")]


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Bearer", f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN])
def test_every_admin_path_refuses_a_missing_or_wrong_token_with_an_anthropic_401(gateway: Gateway,
                                                                               auth: str | None) -> None:
    headers = {"authorization": auth} if auth is not None else {}
    for method, path in ADMIN_PATHS:
        r = httpx.request(method, gateway.url + path, headers=headers, json={}, timeout=10)
        assert r.status_code == 401, (method, path, r.text)
        body = r.json()
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
        assert r.headers["request-id"]


def test_without_an_admin_token_configured_the_admin_api_is_off_and_says_so(fake: FakeUpstream,
                                                                            tmp_path: Any) -> None:
    cfg = gateway_config(fake.url, tmp_path / "bytespike.db")
    cfg["admin_token"] = None
    gw = Gateway(tmp_path, cfg).start()
    try:
        for method, path in ADMIN_PATHS:
            for headers in ({}, {"authorization": f"Bearer {ADMIN_TOKEN}"}, {"authorization": "Bearer"}):
                r = httpx.request(method, gw.url + path, headers=headers, json={}, timeout=10)
                assert r.status_code == 404 and "admin API is off" in r.json()["error"]["message"], r.text
    finally:
        gw.stop()


def test_providers_show_each_deployment_and_its_breaker_without_hosts_or_keys(gateway: Gateway) -> None:
    admin = Admin(gateway)
    got = admin.get("/providers")["data"]
    by = {(d["provider"], d["upstream_model"]): d for d in got}
    assert by[("anthropic", "claude-haiku-4-5")]["models"] == ["claude-haiku-4-5"]
    assert {d["breaker"] for d in got} <= {"closed", "half_open", "open"}
    dead = by[("dead", "claude-unreachable")]
    for _ in range(6):  # enough refusals in a row to open its breaker
        ask(gateway, gateway.account()["key"], "claude-unreachable")
    dead = {(d["provider"], d["upstream_model"]): d for d in admin.get("/providers")["data"]}[
        ("dead", "claude-unreachable")]
    assert dead["breaker"] == "open" and dead["healthy"] is False and dead["times_opened"] >= 1
    text = json.dumps(admin.get("/providers"))
    assert "127.0.0.1" not in text and "http" not in text
    admin.assert_no_secrets()


def test_the_readme_curl_example_works_against_a_running_gateway(gateway: Gateway, fake: FakeUpstream) -> None:
    import re
    import subprocess

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Admin API", 1)[1]
    script = re.search(r"```sh\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    email = f"readme-{tag()}@example.com"
    script = (script.replace("http://127.0.0.1:8080", gateway.url).replace("ada@example.com", email)
              .replace("change-me-to-a-long-random-string", ADMIN_TOKEN))
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    answers = [json.loads(line) for line in out.stdout.replace("}{", "}\n{").splitlines() if line.strip()]
    user, topup, key, usage = answers
    assert user["email"] == email and topup["balance_usd"] == "25" and key["key"].startswith("sk-byts-")
    assert usage["account"] == email and usage["requests"] == 0
    assert ask(gateway, key["key"]).status_code == 200
