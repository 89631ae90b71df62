"""Which deployment serves a request: by priority, spread by weight, sticky per conversation, and
skipping deployments that are failing (circuit breaker) or asked us to wait (``retry-after``).

Health is kept per deployment (provider + upstream model), so its maps are as large as the
configuration and never grow with traffic.
"""

from __future__ import annotations

import enum
import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from bytespike.config import BreakerConfig, DeploymentConfig, ModelConfig, Settings
from bytespike.errors import GatewayError

DeploymentKey = tuple[str, str]  # (provider, upstream model)


class BreakerState(enum.IntEnum):
    """Exported as a number in ``/metrics``: 0 closed, 1 half-open, 2 open."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(slots=True)
class Health:
    """One deployment's breaker and back-off.

    Closed until ``failures`` retryable failures in a row; then open for ``cooldown`` seconds; then
    half-open: one probe may go (and another if it has not reported back within a cooldown); its
    success closes the breaker, its failure opens it again. Nothing disables a deployment for good.
    """

    config: BreakerConfig
    failures: int = 0  # retryable failures in a row
    tripped: bool = False  # open or half-open
    open_until: float = 0.0
    probe_until: float = 0.0  # a half-open probe is out until then
    not_before: float = 0.0  # the upstream's retry-after
    opened: int = 0  # times the breaker opened
    errors: dict[str, int] = field(default_factory=dict)  # by error type, every failure

    def state(self, now: float) -> BreakerState:
        if not self.tripped:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self.open_until else BreakerState.HALF_OPEN

    def ready_at(self, now: float) -> float:
        """When this deployment may next be tried (``now`` or earlier: it may be tried now)."""
        at = self.not_before
        if self.tripped:
            at = max(at, self.open_until, self.probe_until)
        return at

    def take(self, now: float, *, anyway: bool = False) -> bool:
        """May a request go here now? A half-open deployment lets one probe through; ``anyway``
        sends one regardless (the last resort when every deployment is waiting)."""
        if not anyway and now < self.ready_at(now):
            return False
        if self.tripped:
            self.probe_until = now + self.config.cooldown
        return True

    def failed(self, now: float, err: GatewayError) -> None:
        self.errors[err.type] = self.errors.get(err.type, 0) + 1
        if not err.retryable:  # the request's fault (a 400), not the deployment's
            return
        wait = _retry_after(err)
        if wait:
            self.not_before = max(self.not_before, now + wait)
        self.failures += 1
        if self.tripped or self.failures >= self.config.failures:
            self.tripped = True
            self.opened += 1
            self.open_until = now + self.config.cooldown
            self.probe_until = 0.0

    def succeeded(self) -> None:
        self.failures = 0
        self.tripped = False
        self.probe_until = 0.0
        self.not_before = 0.0


class Router:
    def __init__(self, settings: Settings | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rng = rng or random.Random()
        self._clock = clock
        self._default = settings.breaker if settings else BreakerConfig()
        self._breakers: dict[str, BreakerConfig] = {}
        self._health: dict[DeploymentKey, Health] = {}
        if settings is not None:
            self._breakers = {name: p.breaker for name, p in settings.providers.items() if p.breaker is not None}
            for m in settings.models.values():
                for d in m.deployments:
                    self.health(d)

    def health(self, dep: DeploymentConfig) -> Health:
        key = (dep.provider, dep.model)
        h = self._health.get(key)
        if h is None:
            h = self._health[key] = Health(self._breakers.get(dep.provider, self._default))
        return h

    def snapshot(self) -> list[tuple[DeploymentKey, Health, BreakerState]]:
        """Every known deployment with its health, for ``/metrics``."""
        now = self._clock()
        return [(k, h, h.state(now)) for k, h in self._health.items()]

    def order(self, model: ModelConfig, affinity: str | None = None) -> Iterator[DeploymentConfig]:
        """Deployments to try in turn: lowest priority number first; within a priority, a weighted
        shuffle (a fixed one per conversation when ``affinity`` is given, so it keeps hitting the
        same prompt cache). Deployments whose breaker is open or whose ``retry-after`` has not
        passed are skipped. If that skips every one, the one that becomes available first is still
        tried: a request is never refused without an upstream attempt.
        """
        deps = model.deployments
        if len(deps) == 1:
            yield deps[0]
            return
        waiting: list[DeploymentConfig] = []
        tried = False
        for dep in self._ranked(deps, affinity):
            if self.health(dep).take(self._clock()):
                tried = True
                yield dep
            else:
                waiting.append(dep)
        if not tried and waiting:
            now = self._clock()
            first = min(waiting, key=lambda d: self.health(d).ready_at(now))
            self.health(first).take(now, anyway=True)
            yield first

    def _ranked(self, deps: tuple[DeploymentConfig, ...], affinity: str | None) -> list[DeploymentConfig]:
        """Weighted sampling without replacement (key -ln(u)/weight, smallest first); with an
        affinity key, ``u`` is a hash of key and deployment (weighted rendezvous hashing), so a
        conversation's order only changes when its deployments do."""
        def key(d: DeploymentConfig) -> tuple[int, float]:
            u = _unit(affinity, d) if affinity is not None else 1.0 - self._rng.random()
            return d.priority, -math.log(u) / d.weight

        return sorted(deps, key=key)

    def failed(self, dep: DeploymentConfig, err: GatewayError) -> None:
        """An attempt on ``dep`` failed (before the client saw a byte, or mid-stream)."""
        self.health(dep).failed(self._clock(), err)

    def succeeded(self, dep: DeploymentConfig) -> None:
        """``dep`` answered."""
        self.health(dep).succeeded()


def _unit(affinity: str, dep: DeploymentConfig) -> float:
    """A number in (0, 1], fixed for this conversation and deployment."""
    digest = hashlib.blake2b(f"{affinity}\0{dep.provider}\0{dep.model}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 1) / 2.0**64


def _retry_after(err: GatewayError) -> float:
    raw = err.headers.get("retry-after", "")
    return float(raw) if raw.isdigit() else 0.0


def affinity_key(req: dict[str, Any]) -> str | None:
    """Which conversation a request belongs to, for prompt-cache affinity: Anthropic's
    ``metadata.user_id``, OpenAI's ``user``, else a hash of the prefix every turn of a conversation
    repeats and a prompt cache keys on (the system prompt and the first message)."""
    meta = req.get("metadata")
    if isinstance(meta, dict):
        uid = meta.get("user_id")
        if isinstance(uid, str) and uid:
            return "user:" + uid
    user = req.get("user")
    if isinstance(user, str) and user:
        return "user:" + user
    msgs = req.get("messages")
    head: list[Any] = []
    if isinstance(msgs, list):
        for m in msgs:
            head.append(m)
            if not (isinstance(m, dict) and m.get("role") in ("system", "developer")):
                break
    system = req.get("system")
    if not head and system is None:
        return None
    try:
        raw = orjson.dumps([system, head], option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # a value JSON cannot carry: no affinity then
        return None
    return "prefix:" + hashlib.blake2b(raw, digest_size=16).hexdigest()
