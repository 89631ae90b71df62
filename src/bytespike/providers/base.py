"""What every upstream type shares: the contract the road calls (``UpstreamType``), the upstream
error mapping, header building and dialects from provider options.

Providers read their settings through the small structural types below rather than the config
module, so the config can validate provider types against the registry without an import cycle.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson

from bytespike.errors import GatewayError, type_for_status
from bytespike.protocols.base import EventSource


class ProviderSettings(Protocol):
    """What a provider type reads of its ``providers:`` entry."""

    @property
    def base_url(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def options(self) -> dict[str, Any]: ...


class Deployment(Protocol):
    """What a provider type reads of one deployment of a model."""

    @property
    def model(self) -> str: ...
    @property
    def options(self) -> dict[str, Any]: ...

# Hop-by-hop and identity headers never forwarded upstream.
_DROP = {b"host", b"content-length", b"connection", b"x-api-key", b"authorization", b"accept-encoding",
         b"transfer-encoding", b"keep-alive", b"x-goog-api-key", b"cookie"}


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    dropped: tuple[str, ...] = ()  # request parameters the upstream refuses, left out (told to the client)


def error_message(body: bytes) -> str | None:
    """The human message inside an upstream error body, whatever the vendor's shape."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"]
    if isinstance(err, str):
        return err
    if isinstance(data.get("message"), str):
        return data["message"]
    return None


_OPENAI_OVERFLOW = re.compile(r"maximum context length is (\d+)")
_OPENAI_ASKED = re.compile(r"(?:resulted in|requested|you requested) (\d+) tokens")
_GEMINI_OVERFLOW = re.compile(r"input token count \(?(\d+)\)? exceeds the maximum number of tokens allowed \(?(\d+)\)?")


def prompt_too_long(message: str, body: bytes) -> str | None:
    """A vendor's context-overflow refusal in Anthropic's wording (``prompt is too long: N tokens >
    M maximum``), which Claude Code reads to compact the conversation; None for other errors."""
    if message.startswith("prompt is too long"):
        return message
    m = _GEMINI_OVERFLOW.search(message)
    if m:
        return f"prompt is too long: {m.group(1)} tokens > {m.group(2)} maximum"
    m = _OPENAI_OVERFLOW.search(message)
    if m or b"context_length_exceeded" in body:
        asked = _OPENAI_ASKED.search(message)
        limit = m.group(1) if m else "the model's"
        return f"prompt is too long: {asked.group(1) if asked else 'more'} tokens > {limit} maximum"
    return None


def upstream_error(status: int, body: bytes, retry_after: str | None = None) -> GatewayError:
    """Map an upstream failure status to what the client sees; never leaks credentials or hosts."""
    headers: dict[str, str] = {}
    if retry_after and retry_after.strip().isdigit():
        headers["retry-after"] = retry_after.strip()
    if status in (401, 403):
        return GatewayError("api_error", "the upstream provider rejected the gateway's credentials for this model")
    msg = error_message(body)
    if status in (400, 413) and msg is not None:
        overflow = prompt_too_long(msg, body)
        if overflow is not None:
            return GatewayError("invalid_request_error", overflow)
    if status == 429:
        return GatewayError("rate_limit_error", msg or "the upstream provider is rate limiting requests",
                            headers=headers or {"retry-after": "1"}, retryable=True)
    if status in (529, 503):
        return GatewayError("overloaded_error", msg or "the upstream provider is overloaded", headers=headers,
                            retryable=True)
    if status in (408, 504):
        return GatewayError("timeout_error", "the upstream provider timed out", retryable=True)
    if status >= 500:
        return GatewayError("api_error", "the upstream provider failed with an internal error", retryable=True)
    return GatewayError(type_for_status(status), msg or f"the upstream provider refused the request ({status})",
                        status=status if status in (400, 404, 413) else None)


def forward_headers(inbound: Mapping[bytes, bytes], provider: ProviderSettings, keep: tuple[bytes, ...]) -> dict[str, str]:
    """Inbound headers named in ``keep``, plus the provider's configured extra headers."""
    out = {"content-type": "application/json"}
    for name in keep:
        v = inbound.get(name)
        if v is not None and name not in _DROP:
            out[name.decode()] = v.decode("latin-1")
    out.update(provider.headers)
    return out


def allowed_query(query: str, names: tuple[str, ...]) -> str:
    """The parameters of ``query`` named in ``names``, in order; everything else stays here."""
    if not query:
        return ""
    return "&".join(p for p in query.split("&") if p.split("=", 1)[0] in names)


class CountRequest(NamedTuple):
    """A vendor token-count call and how to read its answer as ``{"input_tokens": N}``."""

    request: UpstreamRequest
    convert: Callable[[bytes], bytes]


class UpstreamType(Protocol):
    """One way of reaching a vendor (a ``type:`` of ``providers:``), as the road uses it.

    ``wire`` names the wire format it speaks: a client speaking the same wire is served natively
    (its body goes up unchanged except ``model``); any other goes through the Messages hub.
    """

    name: str
    wire: str
    caveats: tuple[str, ...]  # what a translated request loses on the way to this type

    def native_request(self, req: dict[str, Any], body: bytes | None, headers: Mapping[bytes, bytes], query: str,
                       provider: ProviderSettings, dep: Deployment, stream: bool) -> UpstreamRequest:
        """Same-wire request; ``body`` is the client's bytes, None once the gateway changed ``req``."""
        ...

    def hub_request(self, hub: dict[str, Any], provider: ProviderSettings, dep: Deployment,
                    stream: bool) -> tuple[UpstreamRequest, dict[str, str] | None]:
        """A Messages request translated for this type, and the tool names it had to shorten."""
        ...

    def source(self, model: str, names: dict[str, str] | None) -> EventSource:
        """Reads this type's stream as Anthropic events for a client of another wire."""
        ...

    def message_from(self, raw: bytes, model: str, names: dict[str, str] | None) -> dict[str, Any]:
        """This type's whole answer as a Messages answer."""
        ...

    def count_request(self, hub: dict[str, Any], body: bytes, headers: Mapping[bytes, bytes], query: str,
                      provider: ProviderSettings, dep: Deployment) -> CountRequest | None:
        """The vendor's own token counter for a Messages request; None: estimate locally."""
        ...

    def owner(self, model_id: str) -> str | None:
        """``owned_by`` for the OpenAI model list, when the type knows better than the provider's name."""
        ...


def dialect(cls: type, provider: ProviderSettings, dep: Deployment, presets: Any = None) -> Any:
    """A translator dialect from provider and deployment ``options`` (deployment wins).

    ``dialect: NAME`` starts from a preset of the translator module (e.g. ``deepseek``,
    ``openai_gpt5``, ``gemini_3``); without one, the module's ``preset_for_model`` (if it has one)
    picks it from the deployment's model name (OpenAI's reasoning models); other keys naming a
    dialect field override it (lists become tuples); unknown keys are ignored.
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    opts = {**provider.options, **dep.options}
    base = cls()
    preset = opts.get("dialect")
    if preset is None and presets is not None and hasattr(presets, "preset_for_model"):
        preset = presets.preset_for_model(dep.model)
    if isinstance(preset, str) and presets is not None:
        found = getattr(presets, preset.upper(), None)
        if isinstance(found, cls):
            base = found
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items() if k in fields}
    return dataclasses.replace(base, **changes) if changes else base
