"""A local stand-in for Stripe's API: creates Checkout Sessions the way Stripe answers them
(form-encoded parameters, Bearer secret key, Stripe's error shape), and builds and signs the
webhook events Stripe would send for them (``Stripe-Signature: t=...,v1=...``)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn

from conftest import free_port

SECRET_KEY = "sk_test_" + "f" * 24
WEBHOOK_SECRET = "whsec_" + "w" * 32


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``line_items[0][price_data][currency]=usd`` -> nested dicts and lists, as Stripe reads them."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = parts[i + 1] if not last else None
            if isinstance(node, list):
                idx = int(part)
                while len(node) <= idx:
                    node.append({} if not (nxt or "").isdigit() else [])
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, [] if (nxt or "").isdigit() else {})
    return root


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, t: int | None = None) -> str:
    ts = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


class FakeStripe:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sessions: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.fail_next: tuple[int, dict[str, Any]] | None = None
        self._server: uvicorn.Server | None = None

    def event(self, session_id: str, type_: str = "checkout.session.completed",
              event_id: str | None = None) -> bytes:
        """The body of the event Stripe sends once the session is paid."""
        session = {**self.sessions[session_id], "payment_status": "paid", "status": "complete"}
        return orjson.dumps({
            "id": event_id or "evt_" + secrets.token_hex(12), "object": "event", "api_version": "2024-06-20",
            "created": int(time.time()), "type": type_, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "data": {"object": session}})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, answer = self._answer(scope["method"], scope["path"], headers, body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"request-id", b"req_fake")]})
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if headers.get("authorization") != f"Bearer {SECRET_KEY}":
            return 401, _error("invalid_request_error", "Invalid API Key provided")
        if method != "POST" or path != "/v1/checkout/sessions":
            return 404, _error("invalid_request_error", f"Unrecognized request URL ({method}: {path})")
        if "application/x-www-form-urlencoded" not in headers.get("content-type", ""):
            return 400, _error("invalid_request_error", "Invalid request: expected a form-encoded body")
        params = _nest(parse_qsl(body.decode(), keep_blank_values=True))
        self.requests.append(params)
        if self.fail_next is not None:
            status, err = self.fail_next
            self.fail_next = None
            return status, err
        if params.get("mode") not in ("payment", "setup", "subscription"):
            return 400, _error("invalid_request_error", "Missing required param: mode.", "mode")
        items = params.get("line_items")
        if params["mode"] == "payment" and not items:
            return 400, _error("invalid_request_error", "Missing required param: line_items.", "line_items")
        total = 0
        currency = None
        for i, item in enumerate(items or []):
            pd = item.get("price_data") or {}
            if not str(pd.get("unit_amount", "")).isdigit():
                return 400, _error("invalid_request_error", "Invalid integer", f"line_items[{i}][price_data][unit_amount]")
            if not (pd.get("product_data") or {}).get("name"):
                return 400, _error("invalid_request_error", "Missing required param: name.",
                                   f"line_items[{i}][price_data][product_data][name]")
            currency = pd.get("currency")
            total += int(pd["unit_amount"]) * int(item.get("quantity", "1"))
        if currency == "usd" and total < 50:
            return 400, _error("invalid_request_error", "The Checkout Session's total amount due must add up to at "
                                                        "least $0.50 usd", "line_items")
        sid = "cs_test_" + secrets.token_urlsafe(42).replace("-", "a").replace("_", "b")
        session = {
            "id": sid, "object": "checkout.session", "amount_subtotal": total, "amount_total": total,
            "currency": currency, "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}), "mode": params["mode"], "payment_status": "unpaid",
            "status": "open", "success_url": params.get("success_url"), "cancel_url": params.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{sid}", "created": int(time.time()),
            "expires_at": int(time.time()) + 86400, "livemode": False,
        }
        self.sessions[sid] = session
        return 200, session

    def start(self) -> FakeStripe:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="critical", loop="asyncio",
                                http="h11")
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, daemon=True).start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("fake Stripe did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


def _error(type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"type": type_, "message": message}
    if param:
        err["param"] = param
    return {"error": err}
