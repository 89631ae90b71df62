"""Payment provider webhooks (no admin token: the provider's signature is the authentication)."""

from __future__ import annotations

from bytespike.accounts.errors import Invalid
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
from bytespike.state import State

MAX_EVENT_BYTES = 512 * 1024


async def stripe_webhook(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    rid = new_request_id()
    payments = state.services.payments
    try:
        if payments is None:
            raise GatewayError("not_found_error", "card payments are not configured")
        headers = header_map(scope)
        body = await read_body(receive, MAX_EVENT_BYTES, headers.get(b"content-length"))
        sig = headers.get(b"stripe-signature", b"").decode("latin-1")
        try:
            result = await payments.webhook(body, sig)
        except Invalid as exc:
            raise GatewayError("invalid_request_error", str(exc), param=exc.field) from None
    except GatewayError as err:
        await send_body(send, err.status, err.anthropic_body(rid), headers_list(JSON, rid))
        return
    await send_json(send, 200, result, rid)
