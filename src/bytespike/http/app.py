"""The ASGI application: routes and lifespan (database, pools, background writers)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.routing import Mount, Route, Router

from bytespike.billing.service import billing_enabled
from bytespike.billing.wallet import DatabaseInUse, own_sqlite
from bytespike.config import Settings
from bytespike.errors import GatewayError
from bytespike.gateway import pipeline
from bytespike.gateway.call import new_request_id
from bytespike.http import admin, claude_code, endpoints, oauth, webhooks
from bytespike.http import tasks as task_routes
from bytespike.http.asgi import JSON, Receive, Scope, Send, header_map, headers_list, send_body
from bytespike.protocols import INBOUND, for_request
from bytespike.protocols.base import Inbound
from bytespike.state import State
from bytespike.store.db import sqlite_path, upgrade
from bytespike.telemetry.logs import LogSink

log = logging.getLogger("bytespike")

Handler = Callable[[State, Scope, Receive, Send], Awaitable[None]]


class _Holder:
    state: State | None = None


class Endpoint:
    """A raw ASGI endpoint bound to the app's state (no Request objects on the hot path).

    A method it does not take gets a 405 in the caller's protocol, not a plain-text page.
    """

    __slots__ = ("fn", "holder", "methods")

    def __init__(self, fn: Handler, holder: _Holder, methods: tuple[str, ...] | None = None) -> None:
        self.fn = fn
        self.holder = holder
        self.methods = frozenset(methods + (("HEAD",) if "GET" in methods else ())) if methods else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.holder.state
        assert state is not None, "the app's lifespan has not run"
        if scope["type"] != "http":  # a WebSocket upgrade: not offered
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        if self.methods is not None and scope["method"] not in self.methods:
            await _method_not_allowed(scope, send, self.methods)
            return
        await self.fn(state, scope, receive, send)


async def _method_not_allowed(scope: Scope, send: Send, methods: frozenset[str]) -> None:
    allowed = ", ".join(sorted(m for m in methods if m != "HEAD"))
    err = GatewayError("invalid_request_error", f"{scope['method']} is not allowed on {scope['path']}; use {allowed}",
                       status=405)
    rid = new_request_id()
    body = for_request(scope["path"], header_map(scope)).error_body(err, rid)
    await send_body(send, 405, body, headers_list(JSON, rid, {"allow": allowed}))


def create_app(settings: Settings, *, demo: bool = False, extra_routes: list[Any] | None = None,
               on_ready: Callable[[State], Awaitable[None]] | None = None, processes: int = 1) -> Router:
    """``processes``: how many gateway processes share the database (``serve --workers``)."""
    holder = _Holder()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await upgrade(settings.database_url)
        sink = LogSink()
        path = sqlite_path(settings.database_url)
        owned = None
        if path and processes == 1 and not settings.redis_url and billing_enabled(os.environ):
            try:
                owned = own_sqlite(path)
            except DatabaseInUse as exc:
                log.error("%s", exc)
                sink.close()
                raise
        state = State.build(settings, demo=demo, local=owned is not None)
        await state.start()
        await state.tasks.start(sole_owner=owned is not None)
        holder.state = state
        if on_ready is not None:
            await on_ready(state)
        try:
            yield
        finally:
            await state.tasks.stop()
            holder.state = None
            await state.close()
            sink.close()
            if owned is not None:
                owned.close()

    def ep(fn: Handler, methods: tuple[str, ...] | None = None) -> Endpoint:
        return Endpoint(fn, holder, methods)

    post, get = ("POST",), ("GET",)
    actions: dict[str, tuple[Callable[[Inbound], Handler], tuple[str, ...]]] = {
        "infer": (pipeline.entry, post),
        "count_tokens": (endpoints.count_tokens, post),
        "models": (lambda _: endpoints.list_models, get),
        "model": (lambda _: endpoints.get_model, get),
    }
    routes: list[Any] = [
        *(Route(path, ep(actions[action][0](inbound), actions[action][1]))
          for inbound in INBOUND.values() for path, action in inbound.routes.items()),
        Route("/v1/models", ep(endpoints.list_models, get)),
        Route("/v1/models/{model_id:path}", ep(endpoints.get_model, get)),
        Route("/v1/usage", ep(endpoints.usage, get)),
        Route("/v1/tasks", ep(task_routes.collection, ("GET", "POST"))),
        Route("/v1/tasks/{task_id}", ep(task_routes.item, get)),
        Route("/v1/tasks/{task_id}/cancel", ep(task_routes.cancel, post)),
        Route("/v1/messages/batches", ep(endpoints.batches)),
        Route("/v1/messages/batches/{rest:path}", ep(endpoints.batches)),
        Route("/healthz", ep(endpoints.healthz, get)),
        Route("/readyz", ep(endpoints.readyz, get)),
        Route("/metrics", ep(endpoints.metrics, get)),
        Route("/", ep(claude_code.hello, get)),
        Route("/api/hello", ep(claude_code.hello, get)),
        Route("/managed/settings", ep(claude_code.managed_settings, get)),
        Route("/.well-known/oauth-authorization-server", ep(oauth.metadata, get)),
        Route("/oauth/device_authorization", ep(oauth.device_authorization, post)),
        Route("/oauth/token", ep(oauth.token, post)),
        Route("/device", ep(oauth.device_page, ("GET", "POST"))),
        *(Route(f"/v1/{signal}", ep(claude_code.otlp, post)) for signal in ("metrics", "logs", "traces")),
        Route("/admin/v1", ep(admin.endpoint)),
        Route("/admin/v1/{rest:path}", ep(admin.endpoint)),
        Route("/webhooks/stripe", ep(webhooks.stripe_webhook, post)),
        *(extra_routes or []),
        Mount("/", ep(endpoints.not_found)),
    ]
    # ``default``: paths no route pattern can match (a newline in the path) still get a JSON 404.
    app = Router(routes=routes, lifespan=lifespan, default=ep(endpoints.not_found))
    app.holder = holder  # type: ignore[attr-defined]
    return app
