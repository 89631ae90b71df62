"""What Claude Code expects of a gateway beyond the Messages API: reachability probes, the
operator's managed settings per group, and an OTLP sink for its telemetry."""

from __future__ import annotations

import hashlib
import uuid

import orjson

from bytespike.errors import GatewayError
from bytespike.gateway.call import new_request_id
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
from bytespike.protocols import HUB
from bytespike.state import State

_OTLP_MAX_BYTES = 4 * 1024 * 1024


async def hello(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET``/``HEAD /`` and ``/api/hello``: reachable, no key needed."""
    await send_json(send, 200, {"status": "ok", "service": "bytespike"}, new_request_id())


def settings_document(group: str, settings: dict[str, object]) -> tuple[dict[str, object], str]:
    """The managed-settings document of a group and its ETag (the checksum of its settings)."""
    canonical = orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)
    checksum = hashlib.sha256(canonical).hexdigest()
    doc: dict[str, object] = {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bytespike:managed-settings:{group}")),
           "checksum": checksum, "settings": settings}
    return doc, f'"{checksum}"'


async def managed_settings(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /managed/settings``: the policy the operator set for the key's group (or for every
    group, ``"*"``); 404 when none; ETag / If-None-Match for Claude Code's hourly poll."""
    headers = header_map(scope)
    rid = new_request_id()
    try:
        key = await state.keys.authenticate(headers)
        policies = state.settings.managed_settings
        chosen = policies.get(key.group, policies.get("*"))
        if chosen is None:
            raise GatewayError("not_found_error", "no managed settings for this key's group")
    except GatewayError as err:
        await send_body(send, err.status, HUB.error_body(err, rid), headers_list(JSON, rid, err.response_headers()))
        return
    doc, etag = settings_document(key.group if key.group in policies else "*", chosen)
    if headers.get(b"if-none-match", b"").decode("latin-1").strip() == etag:
        await send_body(send, 304, b"", [(b"etag", etag.encode()), (b"request-id", rid.encode())])
        return
    await send_json(send, 200, doc, rid, {"etag": etag, "cache-control": "private, max-age=0"})


async def otlp(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/metrics|logs|traces``: OTLP/HTTP accepted and acknowledged, not stored (Claude
    Code's telemetry must not fail against the gateway). JSON or protobuf, bounded in size."""
    headers = header_map(scope)
    rid = new_request_id()
    try:
        await read_body(receive, _OTLP_MAX_BYTES, headers.get(b"content-length"))
    except GatewayError as err:
        await send_body(send, err.status, HUB.error_body(err, rid), headers_list(JSON, rid))
        return
    if headers.get(b"content-type", b"").startswith(b"application/x-protobuf"):
        await send_body(send, 200, b"", headers_list(b"application/x-protobuf", rid))
    else:
        await send_json(send, 200, {}, rid)
