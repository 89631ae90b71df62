"""The road every inference request takes, one function per inbound protocol:

authenticate -> parse -> resolve the model -> admit (limits and hold) -> route -> call the
provider (translating if needed) -> relay back -> settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from bytespike.billing import features
from bytespike.billing.service import Outcome
from bytespike.config import DeploymentConfig
from bytespike.errors import GatewayError, bad_request, shown
from bytespike.gateway import routing
from bytespike.gateway.call import Call, new_request_id
from bytespike.gateway.catalogue import Resolved
from bytespike.gateway.plan import Plan
from bytespike.http.asgi import (
    JSON,
    SSE,
    Receive,
    Scope,
    Send,
    header_map,
    headers_list,
    read_body,
    request_params,
    send_body,
)
from bytespike.protocols.base import Inbound, Relay
from bytespike.providers.client import UpstreamResponse
from bytespike.state import State
from bytespike.store.accounts import KeyRecord

log = logging.getLogger("bytespike.gateway.pipeline")


TASK_SCOPE = "bytespike.task"
"""Scope key of an in-process run of a queued task; only the gateway itself builds such scopes."""

# A stream still open when the shutdown deadline passes ends with this.
SHUTDOWN = GatewayError("overloaded_error", "the gateway shut down before the answer was complete")


# ---------------------------------------------------------------- entry points


def entry(inbound: Inbound) -> Callable[[State, Scope, Receive, Send], Awaitable[None]]:
    """The inference endpoint of one inbound protocol."""

    async def infer(state: State, scope: Scope, receive: Receive, send: Send) -> None:
        await _infer(state, scope, receive, send, inbound)

    infer.__name__ = f"infer_{inbound.name}"
    return infer


async def _infer(state: State, scope: Scope, receive: Receive, send: Send, inbound: Inbound) -> None:
    call = Call(new_request_id(), inbound, time.perf_counter())
    headers = header_map(scope)
    call.attribution = _attribution(headers)
    started = False
    task = scope.get(TASK_SCOPE)
    if task is not None:  # a queued task (tasks/worker.py): its key is known and it reads the outcome here
        call.task_id, task.call = task.task_id, call
    body: bytes | None = None
    try:
        params = request_params(scope)
        # The key before the body: strangers cost no memory.
        call.key = task.key if task is not None else await state.keys.authenticate(
            headers, params.get(inbound.key_param) if inbound.key_param else None)
        body = await read_body(receive, state.settings.max_body_bytes, headers.get(b"content-length"),
                               state.settings.server.body_timeout)
        req = call.req = inbound.parse(body, params)
        call.stream = req.get("stream") is True
        call.resolved = resolve(state, req.get("model"), call.key)
        plan = Plan(inbound, call.resolved, req, body, headers, scope.get("query_string", b""),
                    state.catalogue.provider_type(call.resolved.model))
        extras = features.premium(plan.forwarded, headers, state.settings.groups.get(call.key.group))
        call.ticket = await state.billing.admit(call.request_id, call.key, call.resolved, plan.max_tokens,
                                                 plan.input_estimate, extras)
        if call.ticket.max_tokens is not None and call.ticket.max_tokens < plan.max_tokens:
            plan.lower_max_tokens(call.ticket.max_tokens)
            call.extra_headers["bytespike-max-tokens-lowered"] = str(call.ticket.max_tokens)
        started = await _forward(state, call, plan, receive, send)
    except GatewayError as err:
        if started:
            return
        if body is None:  # refused before its body was read: close rather than drain it
            err.headers.setdefault("connection", "close")
        await _send_error(send, call, err)
        await _settle_failure(state, call, err)
    except ConnectionResetError:
        return
    except Exception:  # a gateway fault: the client still gets a clean error and nothing is billed
        log.exception("request %s failed inside the gateway", call.request_id)
        fault = GatewayError("api_error", "internal gateway error; the request was not billed")
        if call.first_byte is None:
            await _send_error(send, call, fault)
        if call.outcome is None:
            await _settle_failure(state, call, fault)
    except asyncio.CancelledError:
        # The shutdown deadline passed: the usage record is still written and the client told; the
        # request ends here rather than as a crash in the server's log.
        if call.outcome is None:
            await _settle_failure(state, call, SHUTDOWN)
        if call.first_byte is None:
            await _send_error(send, call, SHUTDOWN)
    finally:
        state.telemetry.finished(call)


_ATTRIBUTION = (b"x-claude-code-session-id", b"x-claude-code-agent-id", b"x-claude-code-parent-agent-id")


def _attribution(headers: dict[bytes, bytes]) -> tuple[str | None, str | None, str | None]:
    """Who in a Claude Code session made the request, as it says (at most 128 characters each)."""
    session, agent, parent = (headers.get(h) for h in _ATTRIBUTION)
    return (session.decode("latin-1")[:128] if session else None, agent.decode("latin-1")[:128] if agent else None,
            parent.decode("latin-1")[:128] if parent else None)


def validate(state: State, inbound: Inbound, body: bytes, key: KeyRecord, headers: dict[bytes, bytes]) -> Resolved:
    """Everything a request is checked for before admission, without running it (queued tasks):
    its shape, its model and the upstream request its first deployment would get."""
    req = inbound.parse(body, {})
    resolved = resolve(state, req.get("model"), key)
    plan = Plan(inbound, resolved, req, body, headers, b"", state.catalogue.provider_type(resolved.model))
    dep = resolved.model.deployments[0]
    plan.build(state.settings.providers[dep.provider], dep)
    return resolved


def resolve(state: State, model: Any, key: KeyRecord) -> Resolved:
    """The catalogue entry for the model asked for, if the key's group may use it."""
    resolved = state.catalogue.resolve(model)
    if resolved is None:
        raise GatewayError("not_found_error", f"model: {shown(model)} is not a model this gateway serves", param="model")
    if not state.catalogue.allows(key.group, resolved.model.id):
        raise GatewayError(
            "permission_error",
            f"model {shown(model)} is not available to this key's group {key.group!r}",
            param="model",
        )
    return resolved


# ---------------------------------------------------------------- forwarding


async def _forward(state: State, call: Call, plan: Plan, receive: Receive, send: Send) -> bool:
    """Try deployments in order until one answers; returns True once the client got a response start.

    A retryable failure (429, 5xx, timeout, connection error) before the client's first byte moves
    on to the next deployment; once the client has a byte, nothing is retried.
    """
    assert call.resolved is not None
    last: GatewayError | None = None
    for dep in state.router.order(call.resolved.model, routing.affinity_key(plan.req)):
        provider = state.settings.providers[dep.provider]
        call.provider, call.upstream_model = dep.provider, dep.model
        call.attempts += 1
        try:
            upstream_req = plan.build(provider, dep)
        except (orjson.JSONEncodeError, RecursionError):
            raise bad_request("the request nests JSON deeper than 254 levels; it cannot be forwarded") from None
        if upstream_req.dropped:
            call.extra_headers["bytespike-dropped-params"] = ",".join(upstream_req.dropped)
        else:
            call.extra_headers.pop("bytespike-dropped-params", None)
        try:
            resp = await state.upstreams.open(dep.provider, upstream_req, stream=call.stream)
            if resp.status != 200:
                raise resp.error(await resp.read())
            if call.stream:
                chunks = resp.chunks()
                first = await _first_chunk(chunks)
            else:
                raw = await resp.read()
        except GatewayError as err:
            state.router.failed(dep, err)
            last = err
            if err.retryable:
                continue
            raise
        if call.stream:
            broke = await _stream(state, call, plan.relay(provider, dep), resp, chunks, first, receive, send)
            _report(state, dep, broke)
            return True
        state.router.succeeded(dep)
        call.first_byte = time.perf_counter()
        out, usage = plan.convert(raw, provider, dep)
        hdrs = headers_list(JSON, call.request_id, {**call.extra_headers, **state.billing.headers(call.ticket)})
        await send_body(send, 200, out, hdrs)
        await _settle(state, call, usage, Outcome.SUCCEEDED, 200)
        return True
    raise last or GatewayError("overloaded_error", "no route to this model is available")


def _report(state: State, dep: DeploymentConfig, broke: GatewayError | None) -> None:
    """A stream's deployment is judged when the stream ends: one that breaks mid-way is failing too."""
    if broke is None:
        state.router.succeeded(dep)
    else:
        state.router.failed(dep, broke)


async def _first_chunk(chunks: AsyncIterator[bytes]) -> bytes:
    """Wait for the first upstream bytes before answering, so a stream that dies at once can fail over."""
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        raise GatewayError("api_error", "the upstream stream was empty", retryable=True) from None


async def _stream(state: State, call: Call, relay: Relay, resp: UpstreamResponse, chunks: AsyncIterator[bytes],
                  first: bytes, receive: Receive, send: Send) -> GatewayError | None:
    """Relay the stream and settle it; returns how the upstream broke, if it did."""
    gone = asyncio.Event()

    async def watch() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                gone.set()
                return

    watcher = asyncio.create_task(watch())
    hdrs = headers_list(SSE, call.request_id, {**call.extra_headers, **state.billing.headers(call.ticket),
                                               "cache-control": "no-cache"})
    call.first_byte = time.perf_counter()
    outcome = Outcome.SUCCEEDED
    error: GatewayError | None = None
    try:
        await send({"type": "http.response.start", "status": 200, "headers": hdrs})
        out = relay.feed(first)
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
        source: AsyncIterator[bytes | None] = (
            _ticking(chunks, state.settings.stream_keepalive) if relay.keepalive is not None else chunks)
        try:
            async for chunk in source:
                if gone.is_set():
                    outcome = Outcome.CLIENT_DISCONNECTED
                    break
                out = relay.feed(chunk) if chunk is not None else (relay.keepalive or b"")
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except GatewayError as err:
            error = err
        if outcome is Outcome.SUCCEEDED:
            tail = relay.fail(error) if error is not None else relay.end()
            if not relay.ok:
                outcome = Outcome.FAILED
            await send({"type": "http.response.body", "body": tail, "more_body": False})
    except OSError:
        outcome = Outcome.CLIENT_DISCONNECTED
    except asyncio.CancelledError:  # the shutdown deadline: settle first, then tell the client if it can hear
        await _settle(state, call, None, Outcome.FAILED, 200, "shutdown")
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1):
                await send({"type": "http.response.body", "body": relay.fail(SHUTDOWN), "more_body": False})
        raise
    finally:
        watcher.cancel()
        resp.close()
    if gone.is_set() and outcome is Outcome.SUCCEEDED and not relay.ok:
        outcome = Outcome.CLIENT_DISCONNECTED
    usage = relay.usage
    if outcome is Outcome.CLIENT_DISCONNECTED:
        usage = _usage_so_far(relay)
    await _settle(state, call, usage if outcome is not Outcome.FAILED else None, outcome,
                  200, error.type if error else ("stream_incomplete" if outcome is Outcome.FAILED else None))
    if outcome is Outcome.FAILED:
        return error or GatewayError("api_error", "the upstream stream ended before the message was complete",
                                     retryable=True)
    return None


async def _ticking(chunks: AsyncIterator[bytes], every: float) -> AsyncIterator[bytes | None]:
    """The upstream's chunks, with a None each time it has been silent for ``every`` seconds."""
    it = aiter(chunks)
    pending: asyncio.Future[bytes] = asyncio.ensure_future(anext(it))
    try:
        while True:
            done, _ = await asyncio.wait((pending,), timeout=every)
            if not done:
                yield None
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            yield chunk
            pending = asyncio.ensure_future(anext(it))
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, GatewayError):
                await pending


def _usage_so_far(relay: Relay) -> dict[str, Any]:
    """For a client that left mid-stream: input as reported, output estimated from what was
    streamed per script (4 ASCII characters, 2 other letters, 1 CJK character a token)."""
    usage = dict(relay.usage)
    estimate = (relay.output_chars + 3) // 4
    reported = usage.get("output_tokens")
    reported = reported if isinstance(reported, int) and not isinstance(reported, bool) and reported > 0 else 0
    usage["output_tokens"] = max(reported, estimate)
    return usage


# ---------------------------------------------------------------- endings


async def _send_error(send: Send, call: Call, err: GatewayError) -> None:
    call.status, call.error_type = err.status, err.type
    body = call.inbound.error_body(err, call.request_id)
    hdrs = headers_list(JSON, call.request_id, err.response_headers())
    try:
        await send_body(send, err.status, body, hdrs)
    except OSError:
        pass


async def _settle(state: State, call: Call, usage: dict[str, Any] | None, outcome: Outcome, status: int,
                  error_type: str | None = None) -> None:
    call.status, call.outcome, call.usage, call.error_type = status, outcome, usage, error_type
    call.charge = await state.billing.settle(call)


async def _settle_failure(state: State, call: Call, err: GatewayError) -> None:
    if call.key is None:
        return
    await _settle(state, call, None, Outcome.REFUSED if call.ticket is None else Outcome.FAILED, err.status, err.type)
