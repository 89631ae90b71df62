"""Device sign-in (RFC 8414 metadata, RFC 8628 device grant, rotating refresh tokens), with the
verification page driven in a real browser (Debian's chromium through Playwright)."""

from __future__ import annotations

import shutil
import time

import anthropic
import httpx
import pytest

from conftest import Gateway

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_browser = pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is needed")


def person(gateway: Gateway, password: str = "correct horse battery") -> dict:
    acct = gateway.account(group="claude-default")
    email = "dev-" + acct["email"]
    gateway.cli("users", "create", email, "--password-stdin", input=password + "\n")
    gateway.cli("wallet", "topup", email, "5")
    return {"email": email, "password": password}


def start(gateway: Gateway) -> dict:
    r = httpx.post(gateway.url + "/oauth/device_authorization", data={"client_id": "claude-code", "scope": "inference"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    return r.json()


def poll(gateway: Gateway, device_code: str) -> httpx.Response:
    return httpx.post(gateway.url + "/oauth/token",
                      data={"grant_type": DEVICE, "device_code": device_code, "client_id": "claude-code"})


def approve_in_browser(url: str, email: str, password: str) -> str:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in and approve").click()
            page.wait_for_load_state()
            return page.content()
        finally:
            browser.close()


def test_metadata_names_the_device_and_token_endpoints(gateway: Gateway) -> None:
    meta = httpx.get(gateway.url + "/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == gateway.url
    assert meta["device_authorization_endpoint"] == gateway.url + "/oauth/device_authorization"
    assert meta["token_endpoint"] == gateway.url + "/oauth/token"
    assert set(meta["grant_types_supported"]) == {DEVICE, "refresh_token"}


@needs_browser
def test_device_sign_in_end_to_end(gateway: Gateway) -> None:
    who = person(gateway)
    grant = start(gateway)
    assert grant["verification_uri"] == gateway.url + "/device" and len(grant["user_code"]) == 9
    first = poll(gateway, grant["device_code"])
    assert first.status_code == 400 and first.json()["error"] == "authorization_pending"
    assert poll(gateway, grant["device_code"]).json()["error"] == "slow_down"

    page = approve_in_browser(grant["verification_uri_complete"], who["email"], who["password"])
    assert "is signed in as" in page

    time.sleep(grant["interval"])
    tokens = poll(gateway, grant["device_code"])
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["access_token"].startswith("sk-byts-") and body["refresh_token"]
    assert poll(gateway, grant["device_code"]).json()["error"] == "invalid_grant"  # exchanged once only

    sdk = anthropic.Anthropic(base_url=gateway.url, auth_token=body["access_token"], api_key=None, max_retries=0)
    msg = sdk.messages.create(model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": "hi"}])
    assert msg.content

    rotated = httpx.post(gateway.url + "/oauth/token", data={"grant_type": "refresh_token",
                                                             "refresh_token": body["refresh_token"]})
    assert rotated.status_code == 200
    fresh = rotated.json()
    assert fresh["refresh_token"] != body["refresh_token"] and fresh["access_token"] != body["access_token"]
    old = httpx.post(gateway.url + "/v1/messages", headers={"authorization": f"Bearer {body['access_token']}",
                                                            "anthropic-version": "2023-06-01"},
                     json={"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]})
    assert old.status_code == 401
    ok = httpx.post(gateway.url + "/v1/messages", headers={"authorization": f"Bearer {fresh['access_token']}",
                                                           "anthropic-version": "2023-06-01"},
                    json={"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]})
    assert ok.status_code == 200

    # The old refresh token used again: the whole sign-in ends.
    replay = httpx.post(gateway.url + "/oauth/token", data={"grant_type": "refresh_token",
                                                            "refresh_token": body["refresh_token"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    after = httpx.post(gateway.url + "/oauth/token", data={"grant_type": "refresh_token",
                                                           "refresh_token": fresh["refresh_token"]})
    assert after.json()["error"] == "invalid_grant"


def _sign_in_without_browser(gateway: Gateway, who: dict) -> dict:
    grant = start(gateway)
    page = httpx.get(grant["verification_uri_complete"])
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = httpx.post(gateway.url + "/device", cookies=page.cookies,
                   data={"csrf": csrf, "user_code": grant["user_code"], "email": who["email"],
                         "password": who["password"]})
    assert r.status_code == 200, r.text
    return poll(gateway, grant["device_code"]).json()


def test_signing_a_person_out_ends_their_refresh_and_access(gateway: Gateway) -> None:
    who = person(gateway)
    tokens = _sign_in_without_browser(gateway, who)
    assert "access_token" in tokens
    gateway.cli("users", "sign-out", who["email"])
    r = httpx.post(gateway.url + "/oauth/token", data={"grant_type": "refresh_token",
                                                       "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = httpx.get(gateway.url + "/v1/models", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert r.status_code == 401


def test_the_page_refuses_forged_posts_wrong_passwords_and_guessing(gateway: Gateway) -> None:
    who = person(gateway)
    grant = start(gateway)
    forged = httpx.post(gateway.url + "/device", data={"csrf": "x", "user_code": grant["user_code"],
                                                       "email": who["email"], "password": who["password"]})
    assert forged.status_code == 403
    assert poll(gateway, grant["device_code"]).json()["error"] == "authorization_pending"
    statuses = []
    for _ in range(11):
        page = httpx.get(grant["verification_uri_complete"])
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        statuses.append(httpx.post(gateway.url + "/device", cookies=page.cookies,
                                   data={"csrf": csrf, "user_code": grant["user_code"], "email": who["email"],
                                         "password": "wrong password"}).status_code)
    assert statuses[:10] == [401] * 10 and statuses[10] == 429


def test_token_endpoint_errors_are_rfc_shaped(gateway: Gateway) -> None:
    r = httpx.post(gateway.url + "/oauth/token", data={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = httpx.post(gateway.url + "/oauth/token", data={"grant_type": DEVICE, "device_code": "nope", "client_id": "x"})
    assert r.json()["error"] == "invalid_grant"
    r = httpx.post(gateway.url + "/oauth/device_authorization", data={})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"
