"""The endpoints a task may run: the same ASGI handlers the routes use, so money, limits, failover,
usage records and metrics are those of a synchronous request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bytespike.gateway import pipeline
from bytespike.http.asgi import Receive, Scope, Send
from bytespike.state import State

Handler = Callable[[State, Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TaskEndpoint:
    path: str
    protocol: str  # the inbound protocol, as the pipeline names it
    handler: Handler


ENDPOINTS: dict[str, TaskEndpoint] = {
    e.path: e for e in (
        TaskEndpoint("/v1/messages", "anthropic", pipeline.messages),
        TaskEndpoint("/v1/chat/completions", "openai", pipeline.chat_completions),
    )
}
DEFAULT = "/v1/messages"
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
"""Request headers kept with a task and sent with it when it runs."""
