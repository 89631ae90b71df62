"""The non-inference routes: models, token counting, usage, health, and what is not offered."""

from __future__ import annotations

import time
from typing import Any

import orjson

from bytespike.billing import money
from bytespike.config import ModelConfig
from bytespike.errors import GatewayError, bad_request
from bytespike.gateway.pipeline import new_request_id
from bytespike.http.asgi import (
    JSON,
    Receive,
    Scope,
    Send,
    header_map,
    headers_list,
    read_body,
    send_body,
    send_json,
)
from bytespike.state import State

_CREATED = "2025-01-01T00:00:00Z"
_CREATED_TS = 1735689600


async def _guard(send: Send, protocol: str, rid: str, fn) -> None:  # type: ignore[no-untyped-def]
    try:
        await fn()
    except GatewayError as err:
        body = err.anthropic_body(rid) if protocol == "anthropic" else err.openai_body()
        await send_body(send, err.status, body, headers_list(JSON, rid, err.headers))


def _protocol(headers: dict[bytes, bytes]) -> str:
    return "anthropic" if b"anthropic-version" in headers else "openai"


# ---------------------------------------------------------------- models


def _price_usd(model: ModelConfig, multiplier: Any) -> dict[str, str]:
    p = money.Price.from_config(model.price)
    m = money.parse_multiplier(multiplier)
    out = {}
    for f in ("input", "output", "cache_write", "cache_write_1h", "cache_read"):
        nano = getattr(p, f) * m
        out[f] = money.format_usd(int(nano)) if nano.denominator == 1 else str(float(nano) / 1e9)
    return out


def _model_entry(state: State, m: ModelConfig, group: str, shape: str) -> dict[str, Any]:
    extra = {
        "aliases": list(m.aliases),
        "price": {"currency": "USD", "unit": "per million tokens", **_price_usd(m, state.catalogue.multiplier(group))},
        "protocols_aggregate": state.catalogue.protocols(m),
        "caveats": _caveats(state, m),
    }
    if shape == "anthropic":
        entry: dict[str, Any] = {"type": "model", "id": m.id, "display_name": m.display_name or m.id,
                                 "created_at": _CREATED}
        if m.context_window:
            entry["max_input_tokens"] = m.context_window
        if m.max_tokens:
            entry["max_tokens"] = m.max_tokens
    else:
        entry = {"id": m.id, "object": "model", "created": _CREATED_TS, "owned_by": _owner(state, m)}
    entry.update(extra)
    return entry


def _owner(state: State, m: ModelConfig) -> str:
    if m.id.startswith("claude"):
        return "anthropic"
    return m.deployments[0].provider


def _caveats(state: State, m: ModelConfig) -> list[str]:
    out = list(m.caveats)
    ptype = state.catalogue.provider_type(m)
    try:
        if ptype == "openai":
            from bytespike.protocols.openai_chat.upstream import CAVEATS as c1
            out.extend(c1)
        elif ptype == "gemini":
            from bytespike.protocols.gemini.upstream import CAVEATS as c2
            out.extend(c2)
        from bytespike.protocols.openai_chat.inbound import CAVEATS as c3
        out.extend(f"On /v1/chat/completions: {c}" for c in c3)
    except ImportError:
        pass
    return out


async def list_models(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    headers = header_map(scope)
    rid = new_request_id()
    shape = _protocol(headers)

    async def run() -> None:
        key = await state.keys.authenticate(headers)
        entries = [_model_entry(state, m, key.group, shape) for m in state.catalogue.for_group(key.group)]
        if shape == "anthropic":
            body = {"data": entries, "has_more": False, "first_id": entries[0]["id"] if entries else None,
                    "last_id": entries[-1]["id"] if entries else None}
        else:
            body = {"object": "list", "data": entries}
        await send_json(send, 200, body, rid)

    await _guard(send, shape, rid, run)


async def get_model(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    headers = header_map(scope)
    rid = new_request_id()
    shape = _protocol(headers)
    model_id = scope["path_params"]["model_id"]

    async def run() -> None:
        key = await state.keys.authenticate(headers)
        resolved = state.catalogue.resolve(model_id)
        if resolved is None or not state.catalogue.allows(key.group, resolved.model.id):
            raise GatewayError("not_found_error", f"model {model_id!r} not found")
        entry = _model_entry(state, resolved.model, key.group, shape)
        if resolved.asked != resolved.model.id:
            entry["id"] = resolved.asked
            entry["served_by"] = resolved.model.id
        await send_json(send, 200, entry, rid)

    await _guard(send, shape, rid, run)


# ---------------------------------------------------------------- count_tokens


async def count_tokens(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    headers = header_map(scope)
    rid = new_request_id()

    async def run() -> None:
        body = await read_body(receive, state.settings.max_body_bytes, headers.get(b"content-length"))
        key = await state.keys.authenticate(headers)
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise bad_request("request body is not valid JSON") from None
        if not isinstance(req, dict) or not isinstance(req.get("model"), str):
            raise bad_request("model: field required", param="model")
        if not isinstance(req.get("messages"), list):
            raise bad_request("messages: field required", param="messages")
        resolved = state.catalogue.resolve(req["model"])
        if resolved is None:
            raise GatewayError("not_found_error", f"model: {req['model']!r} is not a model this gateway serves")
        if not state.catalogue.allows(key.group, resolved.model.id):
            raise GatewayError("permission_error", f"model {req['model']!r} is not available to this key's group")
        from bytespike.gateway.counting import count

        status, out = await count(state, resolved, req, body, headers, scope.get("query_string", b""))
        await send_body(send, status, out, headers_list(JSON, rid))

    await _guard(send, "anthropic", rid, run)


# ---------------------------------------------------------------- usage


async def usage(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    headers = header_map(scope)
    rid = new_request_id()
    shape = _protocol(headers)

    async def run() -> None:
        key = await state.keys.authenticate(headers)
        kw = await state.billing.windows(key)
        balance, held = await state.billing.wallet(key.account_id)
        now = state.billing.clock()
        windows = []
        for w in kw.snapshot(now):
            windows.append({
                "window": w.name, "seconds": w.seconds,
                "spend_usd": money.format_usd(w.usd_used), "held_usd": money.format_usd(w.usd_held),
                "usd_cap": money.format_usd(w.usd_cap) if w.usd_cap is not None else None,
                "usd_remaining": money.format_usd(max(w.usd_remaining, 0)) if w.usd_remaining is not None else None,
                "requests": w.requests_used, "requests_in_flight": w.requests_in_flight,
                "requests_cap": w.requests_cap, "requests_remaining": w.requests_remaining,
                "tokens": w.tokens_used, "tokens_cap": w.tokens_cap, "tokens_remaining": w.tokens_remaining,
                "resets_at": _iso(w.resets_at), "clears_at": _iso(w.clears_at),
            })
        await send_json(send, 200, {
            "key_id": key.id, "group": key.group, "max_concurrency": key.max_concurrency,
            "windows": windows,
            "wallet": {"balance_usd": money.format_usd(balance), "held_usd": money.format_usd(held),
                       "available_usd": money.format_usd(balance - held)},
        }, rid)

    await _guard(send, shape, rid, run)


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts is not None else None


# ---------------------------------------------------------------- fixed answers


async def batches(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    err = GatewayError("not_found_error",
                       "/v1/messages/batches is not offered by this gateway; use /v1/tasks for queued work")
    await send_body(send, 404, err.anthropic_body(), headers_list(JSON, new_request_id()))


async def not_found(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    err = GatewayError("not_found_error", f"no route {scope['method']} {scope['path']}")
    rid = new_request_id()
    body = err.openai_body() if scope["path"].startswith("/v1/chat") else err.anthropic_body(rid)
    await send_body(send, 404, body, headers_list(JSON, rid))


async def healthz(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, 200, {"status": "ok", "demo": state.demo}, new_request_id())


async def readyz(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        await state.db.ping()
    except Exception as exc:  # any database failure means not ready; say what it was
        await send_json(send, 503, {"status": "unavailable", "database": type(exc).__name__}, new_request_id())
        return
    await send_json(send, 200, {"status": "ready", "database": "ok"}, new_request_id())
