"""JSON Schemas of the admin API's bodies and answers, and the OpenAPI document built from the
route table, so what is served and what is documented cannot drift apart."""

from __future__ import annotations

from typing import Any

S = {"type": "string"}
N = {"type": "number"}
I = {"type": "integer"}  # noqa: E741
B = {"type": "boolean"}
USD = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "USD as an exact decimal string"}
USD_IN = {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "number"}],
          "description": "USD: a decimal string (\"12.5\") or a number"}


def opt(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, *, closed: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": {**required, **(optional or {})},
                           "required": list(required)}
    if closed:
        out["additionalProperties"] = False
    return out


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(name: str) -> dict[str, Any]:
    return obj({"data": {"type": "array", "items": ref(name)}, "has_more": B, "next_cursor": opt(S)})


LIMIT = {"type": "array", "maxItems": 16, "items": {"anyOf": [
    {"type": "string", "maxLength": 200, "description": "WINDOW:usd=X,requests=N,tokens=N"},
    obj({"window": {"type": "string", "maxLength": 20}},
        {"usd": opt(USD_IN), "requests": opt(I), "tokens": opt(I)}, closed=True)]}}

SCHEMAS: dict[str, Any] = {
    "Error": obj({"type": {"const": "error"}, "error": obj({"type": S, "message": S})}, {"request_id": S}),
    "User": obj({"id": S, "email": S, "account_id": S, "org": opt(S), "role": opt(S), "created_at": N},
                {"has_password": opt(B)}),
    "Member": obj({"id": S, "email": S, "role": S, "created_at": N}),
    "Org": obj({"id": S, "name": S, "created_at": N}, {"members": {"type": "array", "items": ref("Member")}}),
    "OrgSummary": obj({"id": S, "name": S, "created_at": N, "members": I}),
    "Membership": obj({"org": S, "email": S, "user_id": S, "role": S}),
    "Invite": obj({"id": S, "token": S, "org": S, "role": S, "email": opt(S), "expires_at": N}),
    "Removed": obj({"org": S, "email": S, "removed": B, "revoked_keys": {"type": "array", "items": S}}),
    "LedgerEntry": obj({"id": I, "time": S, "kind": S, "amount_usd": USD, "balance_usd": USD,
                        "request_id": opt(S), "note": S}),
    "Wallet": obj({"account": S, "balance_usd": USD, "held_usd": USD, "available_usd": USD,
                   "ledger": {"type": "array", "items": ref("LedgerEntry")}}, {"kind": S}),
    "Topup": obj({"account": S, "amount_usd": USD, "balance_usd": USD}),
    "Redeemed": obj({"account": S, "code_id": S, "amount_usd": USD, "balance_usd": USD}),
    "Checkout": obj({"id": S, "session_id": S, "url": opt(S), "account": S, "amount_usd": USD}),
    "Key": obj({"id": S, "prefix": S, "account_id": S, "user_id": opt(S), "group": S, "name": S,
                "limits": {"type": "array", "items": S}, "max_concurrency": opt(I), "created_at": N,
                "revoked_at": opt(N), "expires_at": opt(N)},
               {"status": S, "last_used_at": opt(N)}),
    "NewKey": obj({"id": S, "key": {"type": "string", "pattern": "^sk-byts-"}, "account": S, "group": S,
                   "name": S, "limits": {"type": "array", "items": S}, "max_concurrency": opt(I)}),
    "Revoked": obj({"id": S, "revoked": B}),
    "RedeemCodes": obj({"codes": {"type": "array", "items": S}, "ids": {"type": "array", "items": S}, "usd": USD,
                        "expires_at": opt(N)}),
    "RedeemCode": obj({"id": S, "prefix": S, "usd": USD, "note": S, "created_by": S, "created_at": N,
                       "expires_at": opt(N), "redeemed_at": opt(N), "redeemed_by": opt(S),
                       "status": {"enum": ["open", "redeemed", "expired"]}}),
    "Window": obj({"window": S, "seconds": I, "spend_usd": USD, "usd_cap": opt(USD), "requests": I,
                   "requests_cap": opt(I), "tokens": I, "tokens_cap": opt(I), "resets_at": opt(S)}),
    "Usage": obj({"account": S, "since": S, "total_usd": USD, "requests": I,
                  "models": {"type": "array", "items": obj({
                      "model": S, "requests": I, "failed": I, "input_tokens": I, "output_tokens": I,
                      "cache_read_tokens": I, "cache_write_tokens": I, "cost_usd": USD})},
                  "keys": {"type": "array", "items": obj({
                      "id": S, "name": S, "group": S, "max_concurrency": opt(I),
                      "windows": {"type": "array", "items": ref("Window")}})}},
                 {"sessions": {"type": "array", "items": obj({
                     "session_id": S, "requests": I, "agents": I, "input_tokens": I, "output_tokens": I,
                     "cache_read_tokens": I, "cost_usd": USD, "first_at": N, "last_at": N})}}),
    "DailyUsage": obj({"data": {"type": "array", "items": obj({
        "day": S, "model": S, "requests": I, "input_tokens": I, "output_tokens": I, "cache_read_tokens": I,
        "cache_write_tokens": I, "cost_usd": USD})}}),
    "UsageRecord": obj({"request_id": S, "created_at": N, "key_id": opt(S), "model_asked": S, "status": S,
                        "http_status": I, "input_tokens": I, "output_tokens": I, "cache_read_tokens": I,
                        "cache_write_5m_tokens": I, "cache_write_1h_tokens": I, "cost_usd": USD},
                       {"model_used": opt(S), "provider": opt(S), "latency_ms": opt(N), "ttft_ms": opt(N)}),
    "Deployment": obj({"provider": S, "type": S, "upstream_model": S, "models": {"type": "array", "items": S},
                       "priority": I, "weight": I, "breaker": {"enum": ["closed", "half_open", "open"]},
                       "consecutive_failures": I, "times_opened": I,
                       "errors": {"type": "object", "additionalProperties": I}, "retry_at": opt(S),
                       "healthy": B}),
    "Groups": obj({"groups": {"type": "array", "items": obj({"name": S, "models": {"type": "array", "items": S},
                                                              "multiplier": S})},
                   "tiers": {"type": "object", "additionalProperties": obj(
                       {"groups": {"type": "array", "items": S}, "default_group": S})}}),
    "AuditEntry": obj({"id": I, "created_at": N, "actor": S, "action": S, "target": S,
                       "details": {"type": "object"}}),
}

for _name in ("User", "OrgSummary", "LedgerEntry", "Key", "RedeemCode", "UsageRecord", "AuditEntry"):
    SCHEMAS[f"{_name}Page"] = page_of(_name)
SCHEMAS["Deployments"] = obj({"data": {"type": "array", "items": ref("Deployment")}})

EMAIL = {"type": "string", "maxLength": 320}
BODIES: dict[str, dict[str, Any]] = {
    "user": obj({"email": EMAIL}, {"password": opt({"type": "string", "maxLength": 256}),
                                   "org": opt({"type": "string", "maxLength": 200})}, closed=True),
    "password": obj({"password": {"type": "string", "maxLength": 256}}, closed=True),
    "org": obj({"name": {"type": "string", "maxLength": 200}}, closed=True),
    "member": obj({"email": EMAIL}, {"role": {"enum": ["owner", "member"]}}, closed=True),
    "invite": obj({}, {"role": {"enum": ["owner", "member"]}, "email": opt(EMAIL),
                       "expires_in": opt({"type": "string", "maxLength": 20})}, closed=True),
    "topup": obj({"usd": USD_IN}, {"note": {"type": "string", "maxLength": 500}}, closed=True),
    "redeem": obj({"code": {"type": "string", "maxLength": 100}}, closed=True),
    "checkout": obj({"usd": USD_IN, "success_url": {"type": "string", "maxLength": 2000},
                     "cancel_url": {"type": "string", "maxLength": 2000}}, closed=True),
    "key": obj({"account": {"type": "string", "maxLength": 320}},
               {"group": opt({"type": "string", "maxLength": 100}), "name": {"type": "string", "maxLength": 200},
                "limits": opt(LIMIT), "max_concurrency": opt({"type": "integer", "minimum": 1, "maximum": 10000}),
                "expires_at": opt(N)}, closed=True),
    "codes": obj({"usd": USD_IN}, {"count": {"type": "integer", "minimum": 1, "maximum": 1000},
                                   "expires_in": opt({"type": "string", "maxLength": 20}),
                                   "note": {"type": "string", "maxLength": 500}}, closed=True),
}


def document(ops: list[Any], server_note: str) -> dict[str, Any]:
    """OpenAPI 3.1 for ``ops`` (the admin route table)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 320}}
                  for p in op.path_params]
        params += [{"name": name, "in": "query", "required": req, "schema": schema}
                   for name, (schema, req) in op.query.items()]
        entry: dict[str, Any] = {
            "operationId": op.name, "summary": op.summary, "security": [{"admin": []}],
            "responses": {
                str(op.status): {"description": "success", "content": {"application/json": {"schema": ref(op.answer)}}},
                "default": {"description": "an error, in Anthropic's error shape",
                            "content": {"application/json": {"schema": ref("Error")}}},
            },
        }
        if params:
            entry["parameters"] = params
        if op.body:
            entry["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": BODIES[op.body]}}}
        paths.setdefault("/admin/v1" + op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "ByteSpike admin API", "version": "1",
                 "description": "Operators' JSON API: people, organizations, wallets, keys, redeem codes, "
                                "usage, providers and the audit log. " + server_note},
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"admin": {"type": "http", "scheme": "bearer",
                                                     "description": "the configured admin_token"}}},
    }
