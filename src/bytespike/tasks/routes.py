"""The endpoints a task may run: every inference route of the inbound protocol registry (without
path parameters), served by the same ASGI handler the route uses, so money, limits, failover,
usage records and metrics are those of a synchronous request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bytespike.gateway import pipeline
from bytespike.http.asgi import Receive, Scope, Send
from bytespike.protocols import INBOUND
from bytespike.protocols.base import Inbound
from bytespike.state import State

Handler = Callable[[State, Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TaskEndpoint:
    path: str
    inbound: Inbound
    handler: Handler


ENDPOINTS: dict[str, TaskEndpoint] = {
    path: TaskEndpoint(path, inbound, pipeline.entry(inbound))
    for inbound in INBOUND.values() for path, action in inbound.routes.items()
    if action == "infer" and "{" not in path
}
DEFAULT = "/v1/messages"
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
"""Request headers kept with a task and sent with it when it runs."""
