"""``Call``: what one request has learnt on its way through the road, read by settlement, metrics
and the request log. A leaf module: it imports the types it holds only for type checking."""

from __future__ import annotations

from dataclasses import dataclass, field
from random import getrandbits
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bytespike.billing.money import Usage
    from bytespike.billing.service import Outcome, Ticket
    from bytespike.gateway.catalogue import Resolved
    from bytespike.protocols.base import Inbound
    from bytespike.store.accounts import KeyRecord


def new_request_id() -> str:
    """``req_`` + 96 random bits. From the in-process generator, not the OS: a system call per
    request would hand the GIL to the background writer threads."""
    return f"req_{getrandbits(96):024x}"


@dataclass(slots=True)
class Call:
    """What one request has learnt so far; settlement and the usage record read it."""

    request_id: str
    inbound: Inbound
    started: float
    key: KeyRecord | None = None
    resolved: Resolved | None = None
    stream: bool = False
    ticket: Ticket | None = None
    provider: str | None = None
    upstream_model: str | None = None
    first_byte: float | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    req: dict[str, Any] | None = None
    attempts: int = 0
    # how it ended, as settled (or as refused before settlement)
    status: int = 0
    outcome: Outcome | None = None
    charge: int = 0  # nano-USD, as settlement billed it
    usage: dict[str, Any] | None = None  # Anthropic split, as the relay saw it
    billed: Usage | None = None  # the typed usage settlement charged for (None: nothing billed)
    error_type: str | None = None
    # Claude Code's session, agent and parent agent ids (bounded), recorded on the usage record
    attribution: tuple[str | None, str | None, str | None] = (None, None, None)
    task_id: str | None = None  # set when a queued task runs this request

    @property
    def protocol(self) -> str:
        return self.inbound.name
