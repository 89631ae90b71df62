"""Which deployment serves a request: by priority, spread by weight, sticky per conversation."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator

from .config import DeploymentConfig, ModelConfig
from .errors import GatewayError


class Router:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def order(self, model: ModelConfig, affinity: str | None = None) -> Iterator[DeploymentConfig]:
        """Deployments to try in turn: lowest priority number first; within a priority, a weighted
        shuffle (seeded by the conversation's affinity key so a conversation sticks to one)."""
        deps = model.deployments
        if len(deps) == 1:
            yield deps[0]
            return
        rng = random.Random(zlib.crc32(affinity.encode())) if affinity else self._rng
        for prio in sorted({d.priority for d in deps}):
            tier = [d for d in deps if d.priority == prio]
            while tier:
                pick = rng.choices(range(len(tier)), weights=[d.weight for d in tier])[0]
                yield tier.pop(pick)

    def failed(self, dep: DeploymentConfig, err: GatewayError) -> None:
        """An attempt on ``dep`` failed before the client saw a byte."""

    def succeeded(self, dep: DeploymentConfig) -> None:
        """``dep`` answered."""
