"""The CLI for people, organizations and keys, as an operator types it."""

from __future__ import annotations

import json

import anthropic
import httpx

from conftest import Gateway


def test_user_key_and_wallet_from_the_cli_serve_a_request(gateway: Gateway):
    email = "cli-ada@example.com"
    out = json.loads(gateway.cli("users", "create", email, "--json").stdout)
    assert out["email"] == email and out["id"].startswith("user_")
    gateway.cli("wallet", "topup", email, "12.5", "--note", "first")
    key = json.loads(gateway.cli("keys", "create", email, "--group", "claude-default", "--name", "laptop",
                                 "--limit", "5h:usd=10,requests=100", "--max-concurrency", "3", "--json").stdout)
    assert key["key"].startswith("sk-byts-") and len(key["key"]) >= len("sk-byts-") + 40
    assert key["id"].startswith("key_")
    c = anthropic.Anthropic(base_url=gateway.url, api_key=key["key"], max_retries=0)
    msg = c.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert msg.content
    listed = json.loads(gateway.cli("keys", "list", email, "--json").stdout)["keys"]
    (row,) = listed
    assert row["id"] == key["id"] and row["name"] == "laptop" and row["group"] == "claude-default"
    assert row["limits"] == ["5h:usd=10,requests=100"] and row["max_concurrency"] == 3
    assert key["key"] not in json.dumps(listed)  # never shown again
    table = gateway.cli("keys", "list", email).stdout
    assert "laptop" in table and "active" in table
    gateway.cli("keys", "revoke", key["id"])
    assert "revoked" in gateway.cli("keys", "list", email).stdout
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key["key"], "anthropic-version": "2023-06-01"},
                   json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401


def test_keys_are_stored_only_as_hashes(gateway: Gateway):
    a = gateway.account()
    rows = gateway.query("SELECT key_hash, prefix FROM api_keys WHERE id = ?", a["key_id"])
    (key_hash, prefix) = rows[0]
    assert a["key"] not in key_hash and len(key_hash) == 64
    assert a["key"].startswith(prefix) and len(prefix) < 20
    dump = gateway.query("SELECT * FROM api_keys")
    assert a["key"] not in json.dumps(dump)


def test_org_members_share_one_wallet(gateway: Gateway):
    gateway.cli("users", "create", "m1@acme.test", "--org", "acme-cli")
    gateway.cli("users", "create", "m2@acme.test", "--org", "acme-cli")
    gateway.cli("wallet", "topup", "acme-cli", "3")
    for member in ("m1@acme.test", "m2@acme.test"):
        shown = json.loads(gateway.cli("wallet", "show", member, "--json").stdout)
        assert shown["account"] == "acme-cli" and shown["balance_usd"] == "3"


def test_cli_errors_are_clear(gateway: Gateway):
    res = gateway.cli("wallet", "topup", "nobody@nowhere.test", "5", check=False)
    assert res.returncode == 1 and "nobody@nowhere.test" in res.stderr
    gateway.cli("users", "create", "dup@example.com")
    res = gateway.cli("users", "create", "dup@example.com", check=False)
    assert res.returncode == 1 and "already exists" in res.stderr
    res = gateway.cli("keys", "create", "dup@example.com", "--group", "no-such-group", check=False)
    assert res.returncode == 1 and "no-such-group" in res.stderr
    res = gateway.cli("keys", "create", "dup@example.com", "--group", "multi-vendor", "--limit", "5x:usd=1",
                      check=False)
    assert res.returncode == 1 and "5x" in res.stderr
    res = gateway.cli("wallet", "topup", "dup@example.com", "-3", check=False)
    assert res.returncode != 0
    res = gateway.cli("keys", "revoke", "key_doesnotexist", check=False)
    assert res.returncode == 1 and "key_doesnotexist" in res.stderr


def test_help_everywhere(gateway: Gateway):
    import subprocess
    import sys

    for args in ([], ["users"], ["wallet"], ["keys"], ["keys", "create"], ["serve"], ["usage"], ["models"],
                 ["orgs"], ["orgs", "add-member"], ["redeem-codes"], ["redeem-codes", "create"], ["audit"]):
        res = subprocess.run([sys.executable, "-m", "bytespike", *args, "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "Usage" in res.stdout, args


def test_models_command_lists_the_catalogue(gateway: Gateway):
    data = json.loads(gateway.cli("models", "--json").stdout)
    ids = {m["id"] for m in data["models"]}
    assert {"claude-sonnet-4-6", "gpt-5-5", "gemini-3-1-pro"} <= ids


def test_orgs_members_and_roles_from_the_cli(gateway: Gateway):
    gateway.cli("orgs", "create", "cli-org-roles")
    gateway.cli("orgs", "add-member", "cli-org-roles", "boss@roles.test", "--role", "owner")
    gateway.cli("orgs", "add-member", "cli-org-roles", "dev@roles.test")
    shown = json.loads(gateway.cli("orgs", "show", "cli-org-roles", "--json").stdout)
    assert [(m["email"], m["role"]) for m in shown["members"]] == [("boss@roles.test", "owner"),
                                                                    ("dev@roles.test", "member")]
    key = json.loads(gateway.cli("keys", "create", "dev@roles.test", "--group", "multi-vendor", "--json").stdout)
    assert key["account"] == "cli-org-roles"
    out = json.loads(gateway.cli("orgs", "remove-member", "cli-org-roles", "dev@roles.test", "--json").stdout)
    assert out["revoked_keys"] == [key["id"]]
    listed = {o["name"]: o for o in json.loads(gateway.cli("orgs", "list", "--json").stdout)["orgs"]}
    assert listed["cli-org-roles"]["members"] == 1
    users = {u["email"]: u for u in json.loads(gateway.cli("users", "list", "--json").stdout)["users"]}
    assert users["boss@roles.test"]["role"] == "owner" and users["dev@roles.test"]["org"] is None
    assert "password" not in json.dumps(users)
    log = gateway.cli("audit", "--limit", "20").stdout
    assert "org.member.remove" in log and "cli-org-roles" in log
