"""Each deployment's health as the router sees it in this process: breaker state, failures, errors."""

from __future__ import annotations

import time
from typing import Any

from bytespike.config import Settings
from bytespike.gateway.routing import BreakerState, Router


def deployments(settings: Settings, router: Router) -> list[dict[str, Any]]:
    """One entry per (provider, upstream model), with the public models it serves; no URL or key."""
    seen = {key: (health, state) for key, health, state in router.snapshot()}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    now = time.time()
    for model in settings.models.values():
        for d in model.deployments:
            key = (d.provider, d.model)
            entry = out.get(key)
            if entry is None:
                health, state = seen.get(key, (None, BreakerState.CLOSED))
                ready = health.ready_at(time.monotonic()) if health is not None else 0.0
                wait = max(0.0, ready - time.monotonic()) if health is not None else 0.0
                entry = out[key] = {
                    "provider": d.provider, "type": settings.providers[d.provider].type, "upstream_model": d.model,
                    "models": [], "priority": d.priority, "weight": d.weight,
                    "breaker": state.name.lower(),
                    "consecutive_failures": health.failures if health else 0,
                    "times_opened": health.opened if health else 0,
                    "errors": dict(health.errors) if health else {},
                    "retry_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + wait)) if wait else None,
                    "healthy": state == BreakerState.CLOSED,
                }
            entry["models"].append(model.id)
    return list(out.values())
