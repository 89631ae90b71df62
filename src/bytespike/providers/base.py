"""What every provider type shares: the upstream error mapping and header building."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from bytespike.config import ProviderConfig
from bytespike.errors import GatewayError, type_for_status

# Hop-by-hop and identity headers never forwarded upstream.
_DROP = {b"host", b"content-length", b"connection", b"x-api-key", b"authorization", b"accept-encoding",
         b"transfer-encoding", b"keep-alive", b"x-goog-api-key", b"cookie"}


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


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


def upstream_error(status: int, body: bytes, retry_after: str | None = None) -> GatewayError:
    """Map an upstream failure status to what the client sees; never leaks credentials or hosts."""
    headers: dict[str, str] = {}
    if retry_after and retry_after.strip().isdigit():
        headers["retry-after"] = retry_after.strip()
    if status in (401, 403):
        return GatewayError("api_error", "the upstream provider rejected the gateway's credentials for this model")
    msg = error_message(body)
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


def forward_headers(inbound: dict[bytes, bytes], provider: ProviderConfig, keep: tuple[bytes, ...]) -> dict[str, str]:
    """Inbound headers named in ``keep``, plus the provider's configured extra headers."""
    out = {"content-type": "application/json"}
    for name in keep:
        v = inbound.get(name)
        if v is not None and name not in _DROP:
            out[name.decode()] = v.decode("latin-1")
    out.update(provider.headers)
    return out
