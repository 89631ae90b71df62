"""The non-inference routes: models, token counting, usage, health, and what is not offered."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from bytespike.billing import money
from bytespike.config import ModelConfig
from bytespike.errors import GatewayError, shown
from bytespike.gateway.call import new_request_id
from bytespike.gateway.counting import count
from bytespike.gateway.pipeline import resolve
from bytespike.http.asgi import (
    JSON,
    Receive,
    Scope,
    Send,
    header_map,
    headers_list,
    read_body,
    request_params,
    send_body,
    send_json,
)
from bytespike.protocols import HUB, MODEL_LIST_DEFAULT, for_request
from bytespike.protocols.base import Inbound
from bytespike.providers import TYPES
from bytespike.state import State

Handler = Callable[[State, Scope, Receive, Send], Awaitable[None]]



async def _guard(send: Send, inbound: Inbound, rid: str, fn: Callable[[], Awaitable[None]]) -> None:
    try:
        await fn()
    except GatewayError as err:
        await send_body(send, err.status, inbound.error_body(err, rid), headers_list(JSON, rid, err.response_headers()))


def _shape(scope: Scope, headers: dict[bytes, bytes]) -> Inbound:
    return for_request(scope["path"], headers, MODEL_LIST_DEFAULT)


def _query_key(scope: Scope, inbound: Inbound) -> str | None:
    """The key in the URL, for a protocol that lets clients send it there."""
    return request_params(scope).get(inbound.key_param) if inbound.key_param else None


@dataclass(frozen=True, slots=True)
class _ModelView:
    id: str
    display_name: str
    max_tokens: int | None
    context_window: int | None
    owner: str
    description: str


# ---------------------------------------------------------------- models


def _price_usd(model: ModelConfig, multiplier: Any) -> dict[str, str]:
    p = money.Price.from_config(model.price)
    m = money.parse_multiplier(multiplier)
    out = {}
    for f in ("input", "output", "cache_write", "cache_write_1h", "cache_read"):
        nano = getattr(p, f) * m
        out[f] = money.format_usd(int(nano)) if nano.denominator == 1 else str(float(nano) / 1e9)
    return out


def _model_entry(state: State, m: ModelConfig, group: str, shape: Inbound) -> dict[str, Any]:
    ptype = state.catalogue.provider_type(m)
    price = _price_usd(m, state.catalogue.multiplier(group))
    protocols = state.catalogue.protocols(m)
    description = (f"{m.display_name or m.id} through ByteSpike ({', '.join(protocols)}); "
                   f"USD {price['input']} in / {price['output']} out per million tokens")
    view = _ModelView(m.id, m.display_name, m.max_tokens, m.context_window,
                      TYPES[ptype].owner(m.id) or m.deployments[0].provider, description)
    entry = shape.model_entry(view)
    entry.update({
        "aliases": list(m.aliases),
        "price": {"currency": "USD", "unit": "per million tokens", **price},
        "protocols_aggregate": protocols,
        "caveats": state.catalogue.caveats(m),
    })
    return entry


def _entries(state: State, group: str, shape: Inbound) -> list[dict[str, Any]]:
    out = []
    for m in state.catalogue.for_group(group):
        entry = _model_entry(state, m, group, shape)
        out.append(entry)
        via = state.catalogue.discovery_id(m) if shape.lists_discovery_ids else None
        if via is not None:
            out.append({**entry, "id": via, "display_name": f"{m.display_name or m.id} (via ByteSpike)",
                        "served_by": m.id})
    return out


async def list_models(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    headers = header_map(scope)
    rid = new_request_id()
    shape = _shape(scope, headers)

    async def run() -> None:
        key = await state.keys.authenticate(headers, _query_key(scope, shape))
        await send_json(send, 200, shape.model_list(_entries(state, key.group, shape)), rid)

    await _guard(send, shape, rid, run)


async def get_model(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    headers = header_map(scope)
    rid = new_request_id()
    shape = _shape(scope, headers)
    model_id = scope["path_params"]["model_id"]

    async def run() -> None:
        key = await state.keys.authenticate(headers, _query_key(scope, shape))
        resolved = state.catalogue.resolve(model_id.removeprefix("models/"))
        if resolved is None or not state.catalogue.allows(key.group, resolved.model.id):
            raise GatewayError("not_found_error", f"model {shown(model_id)} not found")
        entry = _model_entry(state, resolved.model, key.group, shape)
        if resolved.asked != resolved.model.id:
            entry["id"] = resolved.asked
            entry["served_by"] = resolved.model.id
        await send_json(send, 200, entry, rid)

    await _guard(send, shape, rid, run)


# ---------------------------------------------------------------- count_tokens


def count_tokens(inbound: Inbound) -> Handler:
    """The token-counting endpoint of one inbound protocol: the vendor's counter where the upstream
    type has one, else a local estimate."""

    async def endpoint(state: State, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        rid = new_request_id()

        async def run() -> None:
            params = request_params(scope)
            key = await state.keys.authenticate(headers, params.get(inbound.key_param) if inbound.key_param else None)
            body = await read_body(receive, state.settings.max_body_bytes, headers.get(b"content-length"),
                                   state.settings.server.body_timeout)
            hub = inbound.parse_count(body, params)
            resolved = resolve(state, hub["model"], key)
            async with state.billing.free_request(key):
                status, out = await count(state, resolved, hub, body, headers, scope.get("query_string", b""),
                                          inbound.wire)
            await send_body(send, status, inbound.count_answer(out), headers_list(JSON, rid))

        await _guard(send, inbound, rid, run)

    return endpoint


# ---------------------------------------------------------------- usage


async def usage(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    headers = header_map(scope)
    rid = new_request_id()
    shape = _shape(scope, headers)

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
                       "/v1/messages/batches is not offered by this gateway; queue work with POST /v1/tasks "
                       "(one request per task, results at GET /v1/tasks/{id} or by webhook; see docs/tasks.md)")
    rid = new_request_id()
    await send_body(send, 404, HUB.error_body(err, rid), headers_list(JSON, rid))


async def not_found(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    err = GatewayError("not_found_error", f"no route {scope['method']} {_clip(scope['path'])}")
    rid = new_request_id()
    body = for_request(scope["path"], header_map(scope)).error_body(err, rid)
    await send_body(send, 404, body, headers_list(JSON, rid))


def _clip(text: str, limit: int = 200) -> str:
    """Client text echoed in an error, bounded."""
    return text if len(text) <= limit else text[:limit] + "..."


async def healthz(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, 200, {"status": "ok", "demo": state.demo}, new_request_id())


async def readyz(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        await state.db.ping()
    except Exception as exc:  # any database failure means not ready; say what it was
        await send_json(send, 503, {"status": "unavailable", "database": type(exc).__name__}, new_request_id())
        return
    await send_json(send, 200, {"status": "ready", "database": "ok"}, new_request_id())


async def metrics(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /metrics``: Prometheus text format; with ``metrics.token`` set, only for
    ``Authorization: Bearer <token>`` (it shows revenue per model and upstream model names)."""
    token = state.settings.metrics_token
    if token:
        given = header_map(scope).get(b"authorization", b"")
        if not hmac.compare_digest(given, b"Bearer " + token.encode()):
            await send_body(send, 401, b'{"error":"metrics need Authorization: Bearer <metrics.token>"}',
                            [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")])
            return
    await send_body(send, 200, state.telemetry.metrics.render(), [(b"content-type", CONTENT_TYPE_LATEST.encode())])
