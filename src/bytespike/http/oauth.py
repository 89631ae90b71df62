"""Device sign-in over HTTP: RFC 8414 metadata, the RFC 8628 device authorization and token
endpoints, and the ``/device`` page where a person signs in and approves a terminal."""

from __future__ import annotations

import html
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qs

import orjson

from bytespike.accounts.device import DEVICE_GRANT, OAuthError, normalize_user_code
from bytespike.accounts.errors import LoginFailed, Throttled
from bytespike.errors import GatewayError
from bytespike.gateway.call import new_request_id
from bytespike.http.asgi import Receive, Scope, Send, header_map, read_body, send_body, send_json
from bytespike.state import State

_FORM_MAX = 16 * 1024
_CSRF_COOKIE = "bytespike_device_csrf"


def base_url(scope: Scope, headers: Mapping[bytes, bytes]) -> str:
    """Where clients reach this gateway, as this request reached it."""
    host = headers.get(b"host", b"").decode("latin-1") or f"{scope['server'][0]}:{scope['server'][1]}"
    proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1") or scope.get("scheme", "http")
    return f"{'https' if proto == 'https' else 'http'}://{host}"


async def metadata(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /.well-known/oauth-authorization-server`` (RFC 8414)."""
    base = base_url(scope, header_map(scope))
    await send_json(send, 200, {
        "issuer": base,
        "device_authorization_endpoint": f"{base}/oauth/device_authorization",
        "token_endpoint": f"{base}/oauth/token",
        "grant_types_supported": [DEVICE_GRANT, "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "service_documentation": f"{base}/docs",
    }, new_request_id(), {"cache-control": "public, max-age=300"})


async def _form(receive: Receive, headers: Mapping[bytes, bytes]) -> dict[str, str]:
    body = await read_body(receive, _FORM_MAX, headers.get(b"content-length"))
    ctype = headers.get(b"content-type", b"")
    if ctype.startswith(b"application/json"):
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            raise OAuthError("invalid_request", "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise OAuthError("invalid_request", "the body must be an object")
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int)}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


async def _oauth_error(send: Send, err: OAuthError) -> None:
    await send_body(send, err.status, orjson.dumps({"error": err.error, "error_description": err.description}),
                    [(b"content-type", b"application/json"), (b"cache-control", b"no-store")])


async def device_authorization(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /oauth/device_authorization`` (RFC 8628 section 3.1)."""
    headers = header_map(scope)
    try:
        form = await _form(receive, headers)
        grant = await state.sign_in.start(form.get("client_id", ""), form.get("scope", ""))
    except OAuthError as err:
        await _oauth_error(send, err)
        return
    except GatewayError as err:
        await _oauth_error(send, OAuthError("invalid_request", err.message, err.status))
        return
    verify = f"{base_url(scope, headers)}/device"
    await send_body(send, 200, orjson.dumps({**grant, "verification_uri": verify,
                                             "verification_uri_complete": f"{verify}?user_code={grant['user_code']}"}),
                    [(b"content-type", b"application/json"), (b"cache-control", b"no-store")])


async def token(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /oauth/token``: the device-code grant and the rotating refresh grant."""
    headers = header_map(scope)
    try:
        form = await _form(receive, headers)
        grant_type = form.get("grant_type", "")
        if grant_type == DEVICE_GRANT:
            if not form.get("device_code"):
                raise OAuthError("invalid_request", "device_code is required")
            tokens = await state.sign_in.exchange_device(form["device_code"], form.get("client_id", ""))
        elif grant_type == "refresh_token":
            if not form.get("refresh_token"):
                raise OAuthError("invalid_request", "refresh_token is required")
            tokens = await state.sign_in.refresh(form["refresh_token"], form.get("client_id") or None)
        else:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type[:80]!r} is not supported")
    except OAuthError as err:
        await _oauth_error(send, err)
        return
    except GatewayError as err:
        await _oauth_error(send, OAuthError("invalid_request", err.message, err.status))
        return
    await send_body(send, 200, orjson.dumps(tokens),
                    [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), (b"pragma", b"no-cache")])


# ---------------------------------------------------------------- the verification page


def _page(title: str, body: str, status_note: str = "") -> bytes:
    note = f'<p class="note" role="status">{status_note}</p>' if status_note else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · ByteSpike</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#1d1d1f}}
h1{{font-size:1.4rem}} label{{display:block;margin:.8rem 0 .2rem;font-weight:600}}
input{{width:100%;padding:.55rem;font-size:1rem;box-sizing:border-box;border:1px solid #bbb;border-radius:6px}}
button{{margin-top:1.2rem;padding:.6rem 1.2rem;font-size:1rem;border:0;border-radius:6px;background:#3b5bdb;color:#fff}}
.note{{background:#f1f3f5;padding:.7rem;border-radius:6px}} code{{font-size:1.1rem}}
</style></head><body><h1>{html.escape(title)}</h1>{note}{body}</body></html>""".encode()


async def _send_page(send: Send, status: int, page: bytes, cookie: str | None = None) -> None:
    hdrs = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"),
            (b"x-frame-options", b"DENY"), (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; "
                                                                         b"form-action 'self'")]
    if cookie is not None:
        hdrs.append((b"set-cookie", f"{_CSRF_COOKIE}={cookie}; Path=/device; HttpOnly; SameSite=Strict".encode()))
    await send_body(send, status, page, hdrs)


def _cookie(headers: Mapping[bytes, bytes], name: str) -> str | None:
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


def _form_html(user_code: str, csrf: str) -> str:
    return f"""<p>Sign in to approve the terminal that shows this code.</p>
<form method="post" action="/device">
<input type="hidden" name="csrf" value="{html.escape(csrf)}">
<label for="user_code">Code</label><input id="user_code" name="user_code" value="{html.escape(user_code)}"
 autocomplete="off" required>
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password"
 autocomplete="current-password" required>
<button type="submit">Sign in and approve</button>
</form>"""


async def device_page(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /device``: the form; ``POST /device``: sign in and approve the code."""
    headers = header_map(scope)
    if scope["method"] != "POST":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        code = normalize_user_code(query.get("user_code", [""])[0])[:16]
        csrf = secrets.token_urlsafe(24)
        await _send_page(send, 200, _page("Approve a sign-in", _form_html(code, csrf)), cookie=csrf)
        return
    try:
        form = await _form(receive, headers)
    except (OAuthError, GatewayError):
        await _send_page(send, 400, _page("Approve a sign-in", "<p>The form could not be read.</p>"))
        return
    code = normalize_user_code(form.get("user_code", ""))[:16]
    expected = _cookie(headers, _CSRF_COOKIE)
    if not expected or not secrets.compare_digest(expected, form.get("csrf", "")):
        await _send_page(send, 403, _page("Approve a sign-in", "<p>This form expired. Open the link again.</p>"))
        return
    email = form.get("email", "").strip().lower()[:320]
    client = scope.get("client") or ("?", 0)
    csrf = secrets.token_urlsafe(24)
    try:
        person = await state.services.people.sign_in(email, form.get("password", ""), str(client[0]))
    except Throttled:
        await _send_page(send, 429, _page("Approve a sign-in", _form_html(code, csrf),
                                          "Too many attempts. Wait a minute and try again."), cookie=csrf)
        return
    except LoginFailed:
        await _send_page(send, 401, _page("Approve a sign-in", _form_html(code, csrf),
                                          "That email and password do not match."), cookie=csrf)
        return
    if not await state.sign_in.approve(code, person["id"], person["account_id"]):
        await _send_page(send, 400, _page("Approve a sign-in", _form_html("", csrf),
                                          f"The code {html.escape(code)} is unknown or expired."), cookie=csrf)
        return
    await _send_page(send, 200, _page("Signed in", f"<p>The terminal showing <code>{html.escape(code)}</code> is "
                                                   f"signed in as {html.escape(email)}. You can close this page.</p>",
                                      "Approved."))
