"""How one request goes upstream and comes back, whichever deployment serves it.

The rule is generic: when the upstream type speaks the client's wire, the request goes through
natively (the body unchanged except ``model``, the answer byte for byte); otherwise the inbound
protocol turns it into a Messages request (the hub), the upstream type turns that into its own
wire, and its answer comes back through Anthropic events into the client's wire. Which codecs
those are is looked up in the two registries; nothing here names a protocol or a vendor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bytespike.billing import money
from bytespike.config import DeploymentConfig, ProviderConfig
from bytespike.gateway.catalogue import Resolved
from bytespike.gateway.relay import TranslatedRelay
from bytespike.protocols.base import Inbound, Relay
from bytespike.protocols.hub import lower_max_tokens
from bytespike.protocols.json import refuse_duplicate_keys
from bytespike.providers import TYPES
from bytespike.providers.base import UpstreamRequest, UpstreamType


class Plan:
    """One request's facts for the road: the effective ``max_tokens`` (the one authority admission
    reads), the hub request when translation is needed, and the per-deployment codecs."""

    def __init__(self, inbound: Inbound, resolved: Resolved, req: dict[str, Any], body: bytes,
                 headers: Mapping[bytes, bytes], query: bytes, first_type: str) -> None:
        self.inbound = inbound
        self.resolved = resolved
        self.req = req
        self.body = body
        self.headers = headers
        self.query = query.decode("latin-1") if query else ""
        self.stream = req.get("stream") is True
        self.input_estimate = money.estimate_input_tokens(len(body))
        self._dirty = False
        self._names: dict[str, str] | None = None  # upstream tool name -> client's, when shortened
        self._hub: dict[str, Any] | None = None
        model_max = resolved.model.max_tokens
        self._single_reading = False
        self._native_first = TYPES[first_type].wire == inbound.wire
        if self._native_first:
            self._raw_body()
            self.max_tokens = inbound.max_tokens(req, model_max)
        else:
            # Translation may raise the cap (a thinking budget must fit under it): hold for that.
            self.max_tokens = int(self.hub()["max_tokens"])

    def _raw_body(self) -> bytes | None:
        """The client's bytes, to forward as sent; checked once to have a single reading."""
        if self._dirty:
            return None
        if not self._single_reading:
            refuse_duplicate_keys(self.body)
            self._single_reading = True
        return self.body

    @property
    def forwarded(self) -> dict[str, Any]:
        """The request as the first deployment's upstream will get it (what premium features are
        judged on: a tool a translation drops costs nothing)."""
        return self.req if self._native_first else self.hub()

    def hub(self) -> dict[str, Any]:
        """The request as a Messages request (translated once, on first use)."""
        if self._hub is None:
            self._hub = self.inbound.to_hub(self.req, self.resolved.model.id, self.resolved.model.max_tokens)
        return self._hub

    def lower_max_tokens(self, n: int) -> None:
        """Admission lowered max_tokens to what the wallet covers, on both the native and hub forms."""
        self._dirty = True
        self.max_tokens = n
        self.inbound.lower_max_tokens(self.req, n)
        if self._hub is not None and self._hub is not self.req:
            lower_max_tokens(self._hub, n)

    def _type(self, provider: ProviderConfig) -> tuple[UpstreamType, bool]:
        utype = TYPES[provider.type]
        return utype, utype.wire == self.inbound.wire

    def build(self, provider: ProviderConfig, dep: DeploymentConfig) -> UpstreamRequest:
        utype, native = self._type(provider)
        if native:
            return utype.native_request(self.req, self._raw_body(), self.headers, self.query,
                                        provider, dep, self.stream)
        request, self._names = utype.hub_request(self.hub(), provider, dep, self.stream)
        return request

    def _rename(self, dep: DeploymentConfig) -> str | None:
        asked = self.resolved.asked
        return asked if asked != dep.model else None

    def relay(self, provider: ProviderConfig, dep: DeploymentConfig) -> Relay:
        utype, native = self._type(provider)
        if native:
            return self.inbound.passthrough(self.req, self._rename(dep))
        asked = self.resolved.asked
        return TranslatedRelay(utype.source(asked, self._names), self.inbound.sink(self.req, asked))

    def convert(self, raw: bytes, provider: ProviderConfig, dep: DeploymentConfig) -> tuple[bytes, dict[str, Any]]:
        """A whole upstream answer -> (client bytes, Anthropic-split usage)."""
        utype, native = self._type(provider)
        if native:
            return self.inbound.native_whole(raw, self._rename(dep))
        asked = self.resolved.asked
        message = utype.message_from(raw, asked, self._names)
        return self.inbound.from_message(message, asked, self.req), message.get("usage") or {}
