"""The model catalogue at run time: ids and aliases, groups, and what each model exposes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase

from bytespike.config import GroupConfig, ModelConfig, ProviderConfig, Settings
from bytespike.protocols import INBOUND
from bytespike.providers import TYPES

DISCOVERY_PREFIX = "claude-via-"
_RESOLVED_CAP = 10_000  # pattern matches remembered; beyond that they are matched each time


@dataclass(frozen=True, slots=True)
class Resolved:
    """A request's model: the id the client asked for and the catalogue entry serving it."""

    asked: str
    model: ModelConfig


class Catalogue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models = settings.models
        self.providers: dict[str, ProviderConfig] = settings.providers
        self.groups: dict[str, GroupConfig] = settings.groups
        self._by_name: dict[str, ModelConfig] = {}
        for m in self.models.values():
            self._by_name[m.id] = m
            for a in m.aliases:
                self._by_name[a] = m
        self._allowed: dict[tuple[str, str], bool] = {}

    def resolve(self, name: str) -> Resolved | None:
        """The model serving ``name``: a listed id or alias, a discovery alias (``claude-via-<id>``,
        for clients that keep only ``claude-`` ids), or a family pattern from the config."""
        m = self._by_name.get(name)
        if m is None:
            m = self._unlisted(name)
        return Resolved(name, m) if m is not None else None

    def _unlisted(self, name: str) -> ModelConfig | None:
        if name.startswith(DISCOVERY_PREFIX):
            m = self.models.get(name[len(DISCOVERY_PREFIX):])
            return m if m is not None and self.discovery_id(m) == name else None
        if len(name) > 200:
            return None
        for pattern, model_id in self.settings.model_patterns:
            if fnmatchcase(name, pattern):
                m = self.models[model_id]
                if len(self._by_name) < _RESOLVED_CAP:
                    self._by_name[name] = m
                return m
        return None

    def discovery_id(self, model: ModelConfig) -> str | None:
        """The ``claude-`` id under which a model of another vendor is listed for Claude Code."""
        return None if model.id.startswith("claude-") else DISCOVERY_PREFIX + model.id

    def allows(self, group: str, model_id: str) -> bool:
        key = (group, model_id)
        hit = self._allowed.get(key)
        if hit is None:
            g = self.groups.get(group)
            hit = g is not None and any(fnmatchcase(model_id, p) for p in g.models)
            self._allowed[key] = hit
        return hit

    def multiplier(self, group: str) -> Decimal:
        g = self.groups.get(group)
        return g.multiplier if g is not None else Decimal(1)

    def for_group(self, group: str) -> list[ModelConfig]:
        return [m for m in self.models.values() if self.allows(group, m.id)]

    def provider_type(self, model: ModelConfig) -> str:
        return self.providers[model.deployments[0].provider].type

    def protocols(self, model: ModelConfig) -> list[str]:
        """Inbound protocols through which the model is reachable, natives first, translated ones suffixed."""
        wire = TYPES[self.provider_type(model)].wire
        native = [p.name for p in INBOUND.values() if p.wire == wire]
        return native + [f"{p.name}:translated" for p in INBOUND.values() if p.wire != wire]

    def caveats(self, model: ModelConfig) -> list[str]:
        """What reaching the model loses: the catalogue's own notes, the upstream type's (for any
        translated request), and each translating inbound protocol's, named by its route."""
        utype = TYPES[self.provider_type(model)]
        out = list(model.caveats)
        if any(p.wire != utype.wire for p in INBOUND.values()):
            out.extend(utype.caveats)
        for p in INBOUND.values():
            if p.wire != utype.wire and p.caveats:
                route = next((path for path, action in p.routes.items() if action == "infer"), p.name)
                out.extend(f"On {route}: {c}" for c in p.caveats)
        return out
