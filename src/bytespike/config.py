"""YAML configuration -> typed settings.

Every error names the file, the line and the field at fault, so a bad file fails at start with a
message an operator can act on. ``${VAR}`` and ``${VAR:-default}`` are interpolated from the
environment in every string value.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bytespike.providers import TYPES

PROVIDER_TYPES = tuple(TYPES)
BUILTIN = "<built-in catalogue>"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_HIDDEN = re.compile(r"__bsenv(\d+)__")
_PLACEHOLDERS = "\x00placeholders"
_PRICE_FIELDS = ("input", "output", "cache_write", "cache_write_1h", "cache_read")


class ConfigError(ValueError):
    """A configuration problem, located: ``file:line: field: what is wrong``."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 330.0  # outlasts Claude Code's 300 s stream watchdog
    total: float = 900.0


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """A deployment is skipped for ``cooldown`` seconds after ``failures`` failures in a row."""

    failures: int = 5
    cooldown: float = 30.0


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    type: str
    base_url: str
    api_key: str
    timeouts: Timeouts = Timeouts()
    headers: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    breaker: BreakerConfig | None = None  # None: the global routing.breaker


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    provider: str
    model: str
    priority: int = 0
    weight: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    id: str
    aliases: tuple[str, ...]
    price: dict[str, Decimal]
    deployments: tuple[DeploymentConfig, ...]
    display_name: str = ""
    caveats: tuple[str, ...] = ()
    max_tokens: int | None = None
    context_window: int | None = None


PREMIUM_FEATURES = ("server_tools", "priority_tier", "fast_mode", "mcp_servers", "context_1m")
"""Request features that cost more than plain tokens; a group offers only those it lists."""


@dataclass(frozen=True, slots=True)
class GroupConfig:
    name: str
    models: tuple[str, ...]
    multiplier: Decimal
    # Premium features this group may use (PREMIUM_FEATURES), each with its price: for
    # ``server_tools`` USD per 1,000 uses, for the others a multiplier on the request's charge.
    features: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Bounds on what one client connection may cost the gateway before it is authenticated."""

    max_header_bytes: int = 64 * 1024  # request line and headers together; larger gets 431
    max_headers: int = 100  # header lines; more gets 431
    header_timeout: float = 10.0  # seconds from connecting (or the previous answer) to complete headers
    body_timeout: float = 60.0  # seconds to receive the whole body once the headers are in
    keepalive_timeout: int = 5  # seconds an idle keep-alive connection is kept open
    write_timeout: float = 60.0  # a client that reads nothing for this long is cut off
    max_connections: int = 4096  # open connections and requests past this get 503


@dataclass(frozen=True, slots=True)
class TierConfig:
    """Which groups an account of one kind (``personal`` or ``org``) may create keys in."""

    name: str
    groups: tuple[str, ...]
    default_group: str


@dataclass(frozen=True, slots=True)
class StripeConfig:
    secret_key: str
    webhook_secret: str
    api_base: str | None = None  # tests point the library at a local fake of Stripe's API
@dataclass(frozen=True, slots=True)
class TasksConfig:
    """The ``tasks:`` section: how queued work runs (see docs/tasks.md)."""

    max_running: int = 16  # tasks running at once, all gateway processes together
    max_running_per_account: int = 4  # tasks of one account running at once
    lease_seconds: float = 60.0  # a running task's lease; renewed while it runs
    poll_seconds: float = 1.0  # how often idle workers look for work
    max_attempts: int = 5  # upstream failures (429, 5xx, timeouts) before a task fails
    backoff_seconds: float = 2.0  # first retry delay; doubles per attempt
    backoff_max_seconds: float = 300.0
    admission_wait_seconds: float = 10.0  # a task refused for money waits this long before trying again
    default_deadline_seconds: int = 86400
    max_deadline_seconds: int = 7 * 86400
    retention_days: float = 30.0
    allow_private_webhooks: bool = False
    webhook_retry_seconds: float = 86400.0  # webhooks are retried on failure for this long
    webhook_timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    source: str
    database_url: str
    redis_url: str | None
    admin_token: str | None
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    groups: dict[str, GroupConfig]
    # (glob, model id): an id the catalogue does not list, matching the glob, is served and priced
    # as that model (Claude Code's dated and newer ids of a family); first match wins.
    model_patterns: tuple[tuple[str, str], ...] = ()
    default_limits: tuple[str, ...] = ("5h", "1d", "7d")
    max_body_bytes: int = 32 * 1024 * 1024
    log_prompts: bool = False
    breaker: BreakerConfig = BreakerConfig()
    shutdown_timeout: float = 30.0
    # The group a person's device sign-in (Claude Code /login through the gateway) issues keys in.
    sign_in_group: str = "claude-default"
    # Claude Code managed settings per group ("*": every group), served at /managed/settings.
    managed_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A translated stream whose upstream is silent this long gets a keepalive frame (Anthropic's ping).
    stream_keepalive: float = 10.0
    tiers: dict[str, TierConfig] = field(default_factory=dict)
    stripe: StripeConfig | None = None
    signup: str = "open"  # closed: people are made by operators or join through an org invitation

    def tier(self, kind: str) -> TierConfig:
        """The policy of an account kind (``user`` accounts are the ``personal`` tier)."""
        name = "org" if kind == "org" else "personal"
        got = self.tiers.get(name)
        return got if got is not None else default_tiers(self.groups)[name]
    tasks: TasksConfig = TasksConfig()
    # What requests get while Redis is unreachable: "closed" (503 for work whose limits cannot be
    # checked) or "open" (served, limits reconciled once Redis is back).
    redis_policy: str = "closed"
    server: ServerLimits = ServerLimits()
    metrics_token: str | None = None  # when set, /metrics needs ``Authorization: Bearer <token>``


REDIS_POLICIES = ("closed", "open")

# ---------------------------------------------------------------- loading


def load(path: str | Path | None = None, *, environ: dict[str, str] | None = None) -> Settings:
    """Load ``path``; without one, ``./bytespike.yaml`` if present, else the built-in catalogue.

    ``BYTESPIKE_DATABASE_URL``, ``BYTESPIKE_REDIS_URL`` and ``BYTESPIKE_ADMIN_TOKEN`` override the file.
    """
    env = dict(os.environ if environ is None else environ)
    if path is None and Path("bytespike.yaml").is_file():
        path = "bytespike.yaml"
    if path is None:
        text = resources.files("bytespike").joinpath("defaults.yaml").read_text("utf-8")
        source = BUILTIN
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such configuration file")
        text = p.read_text("utf-8")
        source = str(p)
    return parse(text, source, env)


def parse(text: str, source: str, env: dict[str, str]) -> Settings:
    # ``${VAR}`` is not a valid plain scalar inside a YAML flow mapping ({a: ${X}}), yet that is how
    # people write it: swap each for a YAML-safe placeholder first (same line), resolve them later.
    originals: list[str] = []

    def hide(m: re.Match[str]) -> str:
        originals.append(m.group(0))
        return f"__bsenv{len(originals) - 1}__"

    text = _ENV.sub(hide, text)
    env = {**env, _PLACEHOLDERS: originals}  # type: ignore[dict-item]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        raise ConfigError(f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if node is None:
        raise ConfigError(f"{source}:1: the file is empty")
    root = _Node(node, source, "", env)
    settings = _settings(root)
    return _overrides(settings, env)


def _overrides(s: Settings, env: dict[str, str]) -> Settings:
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if env.get("BYTESPIKE_DATABASE_URL"):
        changes["database_url"] = env["BYTESPIKE_DATABASE_URL"]
    if env.get("BYTESPIKE_REDIS_URL"):
        changes["redis_url"] = env["BYTESPIKE_REDIS_URL"]
    if env.get("BYTESPIKE_REDIS_POLICY"):
        policy = env["BYTESPIKE_REDIS_POLICY"].strip().lower()
        if policy not in REDIS_POLICIES:
            raise ConfigError(f"BYTESPIKE_REDIS_POLICY={policy!r}: expected one of {', '.join(REDIS_POLICIES)}")
        changes["redis_policy"] = policy
    if env.get("BYTESPIKE_ADMIN_TOKEN"):
        changes["admin_token"] = env["BYTESPIKE_ADMIN_TOKEN"]
    return replace(s, **changes) if changes else s


class _Node:
    """A YAML node with its dotted field path, so errors can say where they are."""

    __slots__ = ("node", "source", "path", "env")

    def __init__(self, node: yaml.Node, source: str, path: str, env: dict[str, str]) -> None:
        self.node, self.source, self.path, self.env = node, source, path, env

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def fail(self, message: str) -> ConfigError:
        where = self.path or "(top level)"
        return ConfigError(f"{self.source}:{self.line}: {where}: {message}")

    def child(self, key: str, node: yaml.Node) -> _Node:
        path = f"{self.path}.{key}" if self.path else key
        return _Node(node, self.source, path, self.env)

    def mapping(self) -> dict[str, _Node]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail("expected a mapping")
        out: dict[str, _Node] = {}
        for k, v in self.node.value:
            key = str(k.value)
            if key in out:
                raise _Node(k, self.source, self.path, self.env).fail(f"duplicate key {key!r}")
            out[key] = self.child(key, v)
        return out

    def sequence(self) -> list[_Node]:
        if isinstance(self.node, yaml.ScalarNode) and self.node.tag.endswith(":null"):
            return []
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail("expected a list")
        return [
            _Node(v, self.source, f"{self.path}[{i}]", self.env) for i, v in enumerate(self.node.value)
        ]

    def is_null(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag.endswith(":null")

    def string(self, *, allow_null: bool = False) -> str | None:
        if self.is_null():
            if allow_null:
                return None
            raise self.fail("a value is required")
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.fail("expected a string")
        value = str(self.node.value)
        originals: Any = self.env.get(_PLACEHOLDERS) or []
        value = _HIDDEN.sub(lambda m: originals[int(m.group(1))], value)

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env and name != _PLACEHOLDERS:
                return str(self.env[name])
            return default if default is not None else ""

        value = _ENV.sub(sub, value)
        if allow_null and value in ("", "null", "~"):
            return None
        return value

    def number(self) -> Decimal:
        raw = self.string()
        try:
            d = Decimal(str(raw))
        except InvalidOperation:
            raise self.fail(f"expected a number, got {raw!r}") from None
        if not d.is_finite() or d < 0:
            raise self.fail(f"expected a non-negative number, got {raw!r}")
        return d

    def integer(self) -> int:
        d = self.number()
        if d != d.to_integral_value():
            raise self.fail(f"expected a whole number, got {d}")
        return int(d)

    def boolean(self) -> bool:
        raw = str(self.string()).lower()
        if raw in ("true", "yes", "on", "1"):
            return True
        if raw in ("false", "no", "off", "0"):
            return False
        raise self.fail(f"expected true or false, got {raw!r}")

    def plain(self) -> Any:
        """Free-form data (provider options): scalars interpolated, numbers kept as YAML typed them."""
        if isinstance(self.node, yaml.MappingNode):
            return {k: v.plain() for k, v in self.mapping().items()}
        if isinstance(self.node, yaml.SequenceNode):
            return [v.plain() for v in self.sequence()]
        if self.is_null():
            return None
        tag = self.node.tag
        if tag.endswith(":int"):
            return int(self.node.value)
        if tag.endswith(":float"):
            return float(self.node.value)
        if tag.endswith(":bool"):
            return self.boolean()
        return self.string()


def _unknown(n: _Node, fields: dict[str, _Node], allowed: tuple[str, ...]) -> None:
    for key, child in fields.items():
        if key not in allowed:
            raise child.fail(f"unknown field (expected one of: {', '.join(allowed)})")


def _settings(root: _Node) -> Settings:
    top = root.mapping()
    _unknown(
        root,
        top,
        ("database_url", "redis_url", "redis_policy", "admin_token", "providers", "models", "groups", "limits",
         "server", "logging", "routing", "model_patterns", "claude_code", "sign_in", "accounts", "payments", "tasks",
         "metrics"),
    )
    breaker = BreakerConfig()
    if "routing" in top:
        rt = top["routing"].mapping()
        _unknown(top["routing"], rt, ("breaker",))
        if "breaker" in rt:
            breaker = _breaker(rt["breaker"], breaker)
    providers = _providers(top["providers"], breaker) if "providers" in top else {}
    if "models" not in top:
        raise root.fail("the 'models' section is missing")
    models = _models(top["models"], providers)
    patterns = _patterns(top["model_patterns"], models) if "model_patterns" in top else ()
    managed: dict[str, dict[str, Any]] = {}
    if "claude_code" in top:
        cc = top["claude_code"].mapping()
        _unknown(top["claude_code"], cc, ("managed_settings",))
        if "managed_settings" in cc:
            for group, doc in cc["managed_settings"].mapping().items():
                value = doc.plain()
                if not isinstance(value, dict):
                    raise doc.fail("managed settings are a mapping (the settings.json object)")
                managed[group] = value
    groups = _groups(top["groups"]) if "groups" in top else {
        "default": GroupConfig("default", ("*",), Decimal(1))
    }
    sign_in_group = "claude-default"
    if "sign_in" in top:
        si = top["sign_in"].mapping()
        _unknown(top["sign_in"], si, ("group",))
        if "group" in si:
            sign_in_group = str(si["group"].string())
            if sign_in_group not in groups:
                raise si["group"].fail(f"sign_in.group: {sign_in_group!r} is not a group in 'groups'")
    limits: tuple[str, ...] = ("5h", "1d", "7d")
    if "limits" in top:
        lm = top["limits"].mapping()
        _unknown(top["limits"], lm, ("windows",))
        if "windows" in lm:
            limits = tuple(str(w.string()) for w in lm["windows"].sequence())
    max_body = 32 * 1024 * 1024
    shutdown_timeout = 30.0
    keepalive = 10.0
    server = ServerLimits()
    if "server" in top:
        sv = top["server"].mapping()
        bounds = tuple(f.name for f in dataclasses.fields(ServerLimits))
        _unknown(top["server"], sv, ("max_body_bytes", "shutdown_timeout", "stream_keepalive_seconds", *bounds))
        if "max_body_bytes" in sv:
            max_body = sv["max_body_bytes"].integer()
        if "shutdown_timeout" in sv:
            shutdown_timeout = float(sv["shutdown_timeout"].number())
        if "stream_keepalive_seconds" in sv:
            keepalive = float(sv["stream_keepalive_seconds"].number())
            if keepalive <= 0:
                raise sv["stream_keepalive_seconds"].fail("must be a positive number of seconds")
        given: dict[str, Any] = {}
        for name in bounds:
            if name in sv:
                is_int = isinstance(getattr(server, name), int)
                value = sv[name].integer() if is_int else float(sv[name].number())
                if value <= 0:
                    raise sv[name].fail("must be greater than 0")
                given[name] = value
        server = dataclasses.replace(server, **given)
    metrics_token = None
    if "metrics" in top:
        mt = top["metrics"].mapping()
        _unknown(top["metrics"], mt, ("token",))
        if "token" in mt:
            metrics_token = mt["token"].string(allow_null=True)
    log_prompts = False
    if "logging" in top:
        lg = top["logging"].mapping()
        _unknown(top["logging"], lg, ("prompts",))
        if "prompts" in lg:
            log_prompts = lg["prompts"].boolean()
    db = top["database_url"].string() if "database_url" in top else "sqlite:///./bytespike.db"
    tiers = _tiers(top["accounts"], groups) if "accounts" in top else default_tiers(groups)
    signup = "open"
    if "accounts" in top and "signup" in top["accounts"].mapping():
        sn = top["accounts"].mapping()["signup"]
        signup = str(sn.string())
        if signup not in ("open", "closed"):
            raise sn.fail(f"expected open or closed, got {signup!r}")
    stripe = _payments(top["payments"]) if "payments" in top else None
    redis_policy = "closed"
    if "redis_policy" in top:
        redis_policy = str(top["redis_policy"].string()).strip().lower()
        if redis_policy not in REDIS_POLICIES:
            raise top["redis_policy"].fail(f"expected one of {', '.join(REDIS_POLICIES)}, got {redis_policy!r}")
    return Settings(
        source=root.source,
        database_url=db or "sqlite:///./bytespike.db",
        redis_url=top["redis_url"].string(allow_null=True) if "redis_url" in top else None,
        redis_policy=redis_policy,
        admin_token=top["admin_token"].string(allow_null=True) if "admin_token" in top else None,
        providers=providers,
        models=models,
        groups=groups,
        model_patterns=patterns,
        managed_settings=managed,
        sign_in_group=sign_in_group,
        default_limits=limits,
        max_body_bytes=max_body,
        log_prompts=log_prompts,
        breaker=breaker,
        shutdown_timeout=shutdown_timeout,
        stream_keepalive=keepalive,
        tiers=tiers,
        stripe=stripe,
        signup=signup,
        tasks=_tasks(top["tasks"]) if "tasks" in top else TasksConfig(),
        server=server,
        metrics_token=metrics_token,
    )


def _patterns(n: _Node, models: dict[str, ModelConfig]) -> tuple[tuple[str, str], ...]:
    out = []
    for pattern, target in n.mapping().items():
        model = str(target.string())
        if model not in models:
            raise target.fail(f"model_patterns: {pattern!r} names {model!r}, which is not in 'models'")
        out.append((pattern, model))
    return tuple(out)


def _one_of(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def default_tiers(groups: dict[str, GroupConfig]) -> dict[str, TierConfig]:
    """Without an ``accounts`` section: every group for both kinds; ``claude-default`` the personal
    default and ``multi-vendor`` the org default where they exist, else the first group."""
    names = tuple(groups)
    first = names[0] if names else ""
    return {
        "personal": TierConfig("personal", names, "claude-default" if "claude-default" in groups else first),
        "org": TierConfig("org", names, "multi-vendor" if "multi-vendor" in groups else first),
    }


def _tiers(n: _Node, groups: dict[str, GroupConfig]) -> dict[str, TierConfig]:
    """``accounts: {signup: open|closed, personal: {groups: [...], default_group: G}, org: {...}}``."""
    f = n.mapping()
    _unknown(n, f, ("personal", "org", "signup"))
    out = default_tiers(groups)
    for name, tn in f.items():
        if name == "signup":
            continue
        t = tn.mapping()
        _unknown(tn, t, ("groups", "default_group"))
        names = tuple(str(g.string()) for g in t["groups"].sequence()) if "groups" in t else out[name].groups
        for i, g in enumerate(names):
            if g not in groups:
                raise t["groups"].sequence()[i].fail(f"unknown group {g!r} (not in the 'groups' section)")
        if not names:
            raise (t["groups"] if "groups" in t else tn).fail("at least one group is required")
        default = str(t["default_group"].string()) if "default_group" in t else \
            (out[name].default_group if out[name].default_group in names else names[0])
        if default not in names:
            raise t["default_group"].fail(f"{default!r} is not one of this tier's groups ({', '.join(names)})")
        out[name] = TierConfig(name, names, default)
    return out


def _payments(n: _Node) -> StripeConfig | None:
    """``payments: {stripe: {secret_key, webhook_secret, api_base?}}``; empty keys leave card top-ups off."""
    f = n.mapping()
    _unknown(n, f, ("stripe",))
    if "stripe" not in f or f["stripe"].is_null():
        return None
    s = f["stripe"].mapping()
    _unknown(f["stripe"], s, ("secret_key", "webhook_secret", "api_base"))
    secret = s["secret_key"].string(allow_null=True) if "secret_key" in s else None
    hook = s["webhook_secret"].string(allow_null=True) if "webhook_secret" in s else None
    if not secret and not hook:
        return None
    if not secret or not hook:
        raise f["stripe"].fail("both secret_key and webhook_secret are required for card top-ups")
    base = s["api_base"].string(allow_null=True) if "api_base" in s else None
    if base is not None and not base.startswith(("http://", "https://")):
        raise s["api_base"].fail(f"expected an http(s) URL, got {base!r}")
    return StripeConfig(secret, hook, base.rstrip("/") if base else None)


def _tasks(n: _Node) -> TasksConfig:
    """``tasks:``; every field optional, each checked with its line."""
    f = n.mapping()
    base = TasksConfig()
    names = tuple(base.__dataclass_fields__)
    _unknown(n, f, names)
    values: dict[str, Any] = {}
    for name, child in f.items():
        default = getattr(base, name)
        if isinstance(default, bool):
            values[name] = child.boolean()
            continue
        value: int | float = child.integer() if isinstance(default, int) else float(child.number())
        minimum = 0 if name in ("backoff_seconds", "admission_wait_seconds") else 1 if isinstance(default, int) else 0.05
        if value < minimum:
            raise child.fail(f"must be at least {minimum}")
        values[name] = value
    cfg = TasksConfig(**values)
    if cfg.default_deadline_seconds > cfg.max_deadline_seconds:
        raise (f.get("default_deadline_seconds") or n).fail("default_deadline_seconds exceeds max_deadline_seconds")
    return cfg


def _providers(n: _Node, breaker: BreakerConfig) -> dict[str, ProviderConfig]:
    out: dict[str, ProviderConfig] = {}
    for name, pn in n.mapping().items():
        f = pn.mapping()
        _unknown(pn, f, ("type", "base_url", "api_key", "timeouts", "headers", "options", "breaker"))
        if "type" not in f:
            raise pn.fail(f"'type' is required ({_one_of(PROVIDER_TYPES)})")
        ptype = f["type"].string()
        if ptype not in PROVIDER_TYPES:
            raise f["type"].fail(f"unknown provider type {ptype!r} (expected {_one_of(PROVIDER_TYPES)})")
        if "base_url" not in f:
            raise pn.fail("'base_url' is required")
        base_url = str(f["base_url"].string()).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise f["base_url"].fail(f"expected an http(s) URL, got {base_url!r}")
        timeouts = Timeouts()
        if "timeouts" in f:
            tm = f["timeouts"].mapping()
            _unknown(f["timeouts"], tm, ("connect", "first_byte", "idle", "total"))
            timeouts = Timeouts(**{k: float(v.number()) for k, v in tm.items()})
        headers = {k: str(v.string()) for k, v in f["headers"].mapping().items()} if "headers" in f else {}
        options = f["options"].plain() if "options" in f else {}
        out[name] = ProviderConfig(
            name=name,
            type=str(ptype),
            base_url=base_url,
            api_key=(f["api_key"].string(allow_null=True) or "") if "api_key" in f else "",
            timeouts=timeouts,
            headers=headers,
            options=options or {},
            breaker=_breaker(f["breaker"], breaker) if "breaker" in f else None,
        )
    return out


def _breaker(n: _Node, base: BreakerConfig) -> BreakerConfig:
    """``{failures: N, cooldown: seconds}``; a field left out keeps ``base``'s value."""
    f = n.mapping()
    _unknown(n, f, ("failures", "cooldown"))
    failures = f["failures"].integer() if "failures" in f else base.failures
    if failures < 1:
        raise f["failures"].fail("failures must be at least 1")
    cooldown = float(f["cooldown"].number()) if "cooldown" in f else base.cooldown
    return BreakerConfig(failures, cooldown)


def _models(n: _Node, providers: dict[str, ProviderConfig]) -> dict[str, ModelConfig]:
    out: dict[str, ModelConfig] = {}
    seen_names: dict[str, str] = {}
    for model_id, mn in n.mapping().items():
        f = mn.mapping()
        _unknown(
            mn, f, ("aliases", "price", "deployments", "display_name", "caveats", "max_tokens", "context_window")
        )
        aliases = tuple(str(a.string()) for a in f["aliases"].sequence()) if "aliases" in f else ()
        for name in (model_id, *aliases):
            if name in seen_names:
                raise mn.fail(f"model id or alias {name!r} is already used by {seen_names[name]!r}")
            seen_names[name] = model_id
        if "price" not in f:
            raise mn.fail("'price' is required")
        pm = f["price"].mapping()
        _unknown(f["price"], pm, _PRICE_FIELDS)
        for req in ("input", "output"):
            if req not in pm:
                raise f["price"].fail(f"'{req}' is required (USD per million tokens)")
        price = {k: v.number() for k, v in pm.items()}
        if "deployments" not in f:
            raise mn.fail("'deployments' is required")
        deployments = []
        for dn in f["deployments"].sequence():
            d = dn.mapping()
            _unknown(dn, d, ("provider", "model", "priority", "weight", "options"))
            if "provider" not in d:
                raise dn.fail("'provider' is required")
            prov = str(d["provider"].string())
            if prov not in providers:
                raise d["provider"].fail(f"unknown provider {prov!r} (not in the 'providers' section)")
            weight = d["weight"].integer() if "weight" in d else 1
            if weight < 1:
                raise d["weight"].fail("weight must be at least 1")
            deployments.append(
                DeploymentConfig(
                    provider=prov,
                    model=str(d["model"].string()) if "model" in d else model_id,
                    priority=d["priority"].integer() if "priority" in d else 0,
                    weight=weight,
                    options=d["options"].plain() if "options" in d else {},
                )
            )
        if not deployments:
            raise f["deployments"].fail("at least one deployment is required")
        out[model_id] = ModelConfig(
            id=model_id,
            aliases=aliases,
            price=price,
            deployments=tuple(deployments),
            display_name=str(f["display_name"].string()) if "display_name" in f else model_id,
            caveats=tuple(str(c.string()) for c in f["caveats"].sequence()) if "caveats" in f else (),
            max_tokens=f["max_tokens"].integer() if "max_tokens" in f else None,
            context_window=f["context_window"].integer() if "context_window" in f else None,
        )
    return out


def _groups(n: _Node) -> dict[str, GroupConfig]:
    out: dict[str, GroupConfig] = {}
    for name, gn in n.mapping().items():
        f = gn.mapping()
        _unknown(gn, f, ("models", "multiplier", "features"))
        if "models" not in f:
            raise gn.fail("'models' is required (a list of model id patterns such as 'claude-*')")
        features: dict[str, Decimal] = {}
        if "features" in f:
            fm = f["features"].mapping()
            _unknown(f["features"], fm, PREMIUM_FEATURES)
            for feat, price in fm.items():
                features[feat] = price.number()
                if feat != "server_tools" and features[feat] < 1:
                    raise price.fail("a premium feature's multiplier must be at least 1")
        out[name] = GroupConfig(
            name=name,
            models=tuple(str(p.string()) for p in f["models"].sequence()),
            multiplier=f["multiplier"].number() if "multiplier" in f else Decimal(1),
            features=features,
        )
    return out
