"""``/v1/tasks``: submit, read, list and cancel queued work (the service is ``bytespike.tasks``).

Errors are in Anthropic's shape; a key sees only its own account's tasks (another account's task
is a 404, not a 403, so ids reveal nothing).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from bytespike.errors import GatewayError, bad_request
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
from bytespike.state import State


async def collection(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/tasks`` submits; ``GET /v1/tasks`` lists, newest first."""
    headers = header_map(scope)
    rid = new_request_id()
    try:
        key = await state.keys.authenticate(headers)
        if scope["method"] == "POST":
            raw = await read_body(receive, state.settings.max_body_bytes, headers.get(b"content-length"))
            idem = headers.get(b"idempotency-key")
            row, replayed = await state.tasks.submit(key, raw, headers,
                                                     idem.decode("latin-1") if idem is not None else None)
            from bytespike.tasks.service import view

            extra = {"location": f"/v1/tasks/{row.id}"}
            if replayed:
                extra["idempotent-replayed"] = "true"
            await send_json(send, 202, view(row), rid, extra)
            return
        q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        limit = _int(q, "limit", 20)
        page = await state.tasks.page(key.account_id, status=_one(q, "status"), after=_one(q, "after"), limit=limit)
        await send_json(send, 200, page, rid)
    except GatewayError as err:
        await _error(send, err, rid)


async def item(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /v1/tasks/{id}``."""
    rid = new_request_id()
    try:
        key = await state.keys.authenticate(header_map(scope))
        await send_json(send, 200, await state.tasks.get(key.account_id, scope["path_params"]["task_id"]), rid)
    except GatewayError as err:
        await _error(send, err, rid)


async def cancel(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/tasks/{id}/cancel``: a queued or running task ends ``canceled``, unbilled."""
    rid = new_request_id()
    try:
        key = await state.keys.authenticate(header_map(scope))
        await send_json(send, 200, await state.tasks.cancel(key.account_id, scope["path_params"]["task_id"]), rid)
    except GatewayError as err:
        await _error(send, err, rid)


def _one(q: dict[str, list[str]], name: str) -> str | None:
    values = q.get(name)
    return values[-1] if values else None


def _int(q: dict[str, list[str]], name: str, default: int) -> int:
    raw = _one(q, name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise bad_request(f"{name}: expected a whole number", param=name)
    return int(raw)


async def _error(send: Send, err: GatewayError, rid: str) -> None:
    await send_body(send, err.status, err.anthropic_body(rid), headers_list(JSON, rid, err.headers))
