"""The operator JSON API at ``/admin/v1``: Bearer ``admin_token``, Anthropic-shaped errors.

Each route is one entry in ``OPS`` (method, path, body and query schemas, answer schema) and a
handler that calls the account services; the same table serves requests and the OpenAPI document.
With no admin token configured the API is off and says so.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError

from bytespike.accounts import errors as e
from bytespike.errors import GatewayError
from bytespike.gateway.call import new_request_id
from bytespike.http import admin_schema as sch
from bytespike.http.asgi import JSON, Receive, Scope, Send, header_map, headers_list, read_body, send_body
from bytespike.state import State
from bytespike.store import pages
from bytespike.telemetry.deployments import deployments

PREFIX = "/admin/v1"
MAX_BODY = 256 * 1024
ACTOR = e.Actor.operator("admin-api")
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(slots=True)
class Call:
    state: State
    params: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]


Handler = Callable[[Call], Awaitable[Any]]
PAGE_QUERY: dict[str, tuple[dict[str, Any], bool]] = {
    "limit": ({"type": "integer", "minimum": 1, "maximum": pages.MAX_LIMIT}, False),
    "cursor": ({"type": "string", "maxLength": 400}, False),
}


@dataclass(slots=True)
class Op:
    method: str
    path: str
    name: str
    summary: str
    answer: str
    handler: Handler
    body: str | None = None
    query: dict[str, tuple[dict[str, Any], bool]] = field(default_factory=dict)
    status: int = 200
    needs_stripe: bool = False
    path_params: tuple[str, ...] = ()
    pattern: re.Pattern[str] = field(default=re.compile(""))

    def __post_init__(self) -> None:
        self.path_params = tuple(_PARAM.findall(self.path))
        self.pattern = re.compile("^" + _PARAM.sub(r"(?P<\1>[^/]+)", self.path) + "$")


def _page(p: pages.Page) -> dict[str, Any]:
    return {"data": p.items, "has_more": p.next_cursor is not None, "next_cursor": p.next_cursor}


def _limit(c: Call) -> int:
    return int(c.query.get("limit") or pages.DEFAULT_LIMIT)


# ---------------------------------------------------------------- handlers


async def _users_create(c: Call) -> Any:
    b = c.body
    return await c.state.services.people.create(ACTOR, b["email"], b.get("password"), b.get("org"))


async def _users_list(c: Call) -> Any:
    return _page(await c.state.services.people.page(ACTOR, _limit(c), c.query.get("cursor")))


async def _users_get(c: Call) -> Any:
    return await c.state.services.people.get(c.params["email"])


async def _users_password(c: Call) -> Any:
    await c.state.services.people.set_password(ACTOR, c.params["email"], c.body["password"])
    u = await c.state.services.people.get(c.params["email"])
    return u


async def _orgs_create(c: Call) -> Any:
    return await c.state.services.orgs.create(ACTOR, c.body["name"])


async def _orgs_list(c: Call) -> Any:
    return _page(await c.state.services.orgs.page(ACTOR, _limit(c), c.query.get("cursor")))


async def _orgs_get(c: Call) -> Any:
    return await c.state.services.orgs.show(ACTOR, c.params["name"])


async def _members_add(c: Call) -> Any:
    return await c.state.services.orgs.add_member(ACTOR, c.params["name"], c.body["email"],
                                                  c.body.get("role", "member"))


async def _members_remove(c: Call) -> Any:
    return await c.state.services.orgs.remove_member(ACTOR, c.params["name"], c.params["email"])


async def _invite(c: Call) -> Any:
    b = c.body
    return await c.state.services.orgs.invite(ACTOR, c.params["name"], b.get("role", "member"), b.get("email"),
                                              b.get("expires_in") or "7d")


async def _wallet_show(c: Call) -> Any:
    return await c.state.services.wallets.show(ACTOR, c.params["account"])


async def _wallet_topup(c: Call) -> Any:
    return await c.state.services.wallets.topup(ACTOR, c.params["account"], c.body["usd"], c.body.get("note", ""))


async def _wallet_ledger(c: Call) -> Any:
    return _page(await c.state.services.wallets.ledger(ACTOR, c.params["account"], _limit(c), c.query.get("cursor")))


async def _wallet_redeem(c: Call) -> Any:
    return await c.state.services.redeem_codes.redeem(ACTOR, c.body["code"], c.params["account"])


async def _wallet_checkout(c: Call) -> Any:
    pay = c.state.services.payments
    if pay is None:
        raise e.NotConfigured("card top-ups are not configured (payments.stripe)")
    return await pay.checkout(ACTOR, c.params["account"], c.body["usd"], c.body["success_url"], c.body["cancel_url"])


async def _keys_create(c: Call) -> Any:
    b = c.body
    return await c.state.services.keys.create(ACTOR, b["account"], group=b.get("group"), name=b.get("name", ""),
                                              limits=b.get("limits"), max_concurrency=b.get("max_concurrency"),
                                              expires_at=b.get("expires_at"))


async def _keys_list(c: Call) -> Any:
    return _page(await c.state.services.keys.page(ACTOR, c.query["account"], _limit(c), c.query.get("cursor")))


async def _keys_get(c: Call) -> Any:
    return await c.state.services.keys.get(ACTOR, c.params["id"])


async def _keys_revoke(c: Call) -> Any:
    return await c.state.services.keys.revoke(ACTOR, c.params["id"])


async def _codes_create(c: Call) -> Any:
    b = c.body
    return await c.state.services.redeem_codes.create(ACTOR, b["usd"], b.get("count", 1), b.get("expires_in"),
                                                      b.get("note", ""))


async def _codes_list(c: Call) -> Any:
    return _page(await c.state.services.redeem_codes.page(ACTOR, _limit(c), c.query.get("cursor")))


async def _usage(c: Call) -> Any:
    q = c.query
    return await c.state.services.usage.summary(ACTOR, q["account"], q.get("since") or "1d", q.get("member"))


async def _usage_daily(c: Call) -> Any:
    q = c.query
    return {"data": await c.state.services.usage.daily(ACTOR, q["account"], q.get("days") or 7, q.get("member"))}


async def _usage_records(c: Call) -> Any:
    q = c.query
    return _page(await c.state.services.usage.records(ACTOR, q["account"], q.get("since") or "7d", q.get("member"),
                                                      _limit(c), q.get("cursor")))


async def _providers(c: Call) -> Any:
    return {"data": deployments(c.state.settings, c.state.router)}


async def _groups(c: Call) -> Any:
    s = c.state.settings
    return {"groups": [{"name": g.name, "models": list(g.models), "multiplier": str(Decimal(g.multiplier))}
                       for g in s.groups.values()],
            "tiers": {t: {"groups": list(s.tier(k).groups), "default_group": s.tier(k).default_group}
                      for t, k in (("personal", "user"), ("org", "org"))}}


async def _audit(c: Call) -> Any:
    q = c.query
    return _page(await c.state.services.audit.page(ACTOR, _limit(c), q.get("cursor"), action=q.get("action"),
                                                   target=q.get("target")))


async def _openapi(c: Call) -> Any:
    return openapi(c.state)


_ACCOUNT_Q = {"account": ({"type": "string", "minLength": 1, "maxLength": 320}, True)}
_SINCE_Q = {"since": ({"type": "string", "maxLength": 20}, False),
            "member": ({"type": "string", "maxLength": 320}, False)}

OPS: list[Op] = [
    Op("GET", "/openapi.json", "openapi", "This document", "Any", _openapi),
    Op("POST", "/users", "createUser", "Create a person (with their own wallet, or in an org)", "User",
       _users_create, body="user", status=201),
    Op("GET", "/users", "listUsers", "People, oldest first", "UserPage", _users_list, query=PAGE_QUERY),
    Op("GET", "/users/{email}", "getUser", "One person", "User", _users_get),
    Op("POST", "/users/{email}/password", "setPassword", "Set a person's console password", "User",
       _users_password, body="password"),
    Op("POST", "/orgs", "createOrg", "Create an organization", "Org", _orgs_create, body="org", status=201),
    Op("GET", "/orgs", "listOrgs", "Organizations, oldest first", "OrgSummaryPage", _orgs_list, query=PAGE_QUERY),
    Op("GET", "/orgs/{name}", "getOrg", "An organization and its members", "Org", _orgs_get),
    Op("POST", "/orgs/{name}/members", "addMember", "Add a member or change their role", "Membership",
       _members_add, body="member"),
    Op("DELETE", "/orgs/{name}/members/{email}", "removeMember", "Remove a member (their org keys are revoked)",
       "Removed", _members_remove),
    Op("POST", "/orgs/{name}/invites", "createInvite", "A single-use invitation to join (its token goes in a link)",
       "Invite", _invite, body="invite", status=201),
    Op("GET", "/wallets/{account}", "getWallet", "Balance, holds and latest ledger entries", "Wallet", _wallet_show),
    Op("GET", "/wallets/{account}/topup", "getWalletAtTopup", "The same as GET /wallets/{account}", "Wallet",
       _wallet_show),
    Op("POST", "/wallets/{account}/topup", "topUp", "Add USD to a wallet", "Topup", _wallet_topup, body="topup"),
    Op("GET", "/wallets/{account}/ledger", "listLedger", "Ledger entries, newest first", "LedgerEntryPage",
       _wallet_ledger, query=PAGE_QUERY),
    Op("POST", "/wallets/{account}/redeem", "redeemCode", "Redeem a code into a wallet", "Redeemed",
       _wallet_redeem, body="redeem"),
    Op("POST", "/wallets/{account}/checkout", "createCheckout", "A Stripe Checkout session (at least 5 USD)",
       "Checkout", _wallet_checkout, body="checkout", status=201, needs_stripe=True),
    Op("POST", "/keys", "createKey", "Create a key (shown once)", "NewKey", _keys_create, body="key", status=201),
    Op("GET", "/keys", "listKeys", "An account's keys, oldest first", "KeyPage", _keys_list,
       query={**_ACCOUNT_Q, **PAGE_QUERY}),
    Op("GET", "/keys/{id}", "getKey", "One key (never the key itself)", "Key", _keys_get),
    Op("POST", "/keys/{id}/revoke", "revokeKey", "Revoke a key", "Revoked", _keys_revoke),
    Op("POST", "/redeem-codes", "createRedeemCodes", "Make single-use redeem codes", "RedeemCodes", _codes_create,
       body="codes", status=201),
    Op("GET", "/redeem-codes", "listRedeemCodes", "Redeem codes (never the codes themselves)", "RedeemCodePage",
       _codes_list, query=PAGE_QUERY),
    Op("GET", "/usage", "getUsage", "Spend per model and each key's windows", "Usage", _usage,
       query={**_ACCOUNT_Q, **_SINCE_Q}),
    Op("GET", "/usage/daily", "getDailyUsage", "Spend per UTC day and model", "DailyUsage", _usage_daily,
       query={**_ACCOUNT_Q, "days": ({"type": "integer", "minimum": 1, "maximum": 366}, False),
              "member": ({"type": "string", "maxLength": 320}, False)}),
    Op("GET", "/usage/records", "listUsageRecords", "Single requests, newest first", "UsageRecordPage",
       _usage_records, query={**_ACCOUNT_Q, **_SINCE_Q, **PAGE_QUERY}),
    Op("GET", "/providers", "listProviders", "Each deployment's health and breaker", "Deployments", _providers),
    Op("GET", "/groups", "listGroups", "Groups and which each kind of account may use", "Groups", _groups),
    Op("GET", "/audit", "listAudit", "The audit log, newest first", "AuditEntryPage", _audit,
       query={**PAGE_QUERY, "action": ({"type": "string", "maxLength": 64}, False),
              "target": ({"type": "string", "maxLength": 320}, False)}),
]


def _ops(state: State) -> list[Op]:
    return [op for op in OPS if not op.needs_stripe or state.services.payments is not None]


def openapi(state: State) -> dict[str, Any]:
    ops = [op for op in _ops(state) if op.name != "openapi"]
    doc = sch.document(ops, "Every path needs Authorization: Bearer <admin_token>.")
    doc["components"]["schemas"].setdefault("Any", {})
    return doc


# ---------------------------------------------------------------- the endpoint


async def endpoint(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    rid = new_request_id()
    try:
        status, data = await _serve(state, scope, receive)
    except GatewayError as err:
        await send_body(send, err.status, err.anthropic_body(rid), headers_list(JSON, rid, err.headers))
        return
    await send_body(send, status, orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), headers_list(JSON, rid))


async def _serve(state: State, scope: Scope, receive: Receive) -> tuple[int, Any]:
    token = state.settings.admin_token
    if not token:
        raise GatewayError("not_found_error", "the admin API is off: set admin_token in the configuration "
                                              "(or BYTESPIKE_ADMIN_TOKEN) to turn it on")
    headers = header_map(scope)
    auth = headers.get(b"authorization", b"")
    given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
    if not given or not hmac.compare_digest(given, token.encode()):
        raise GatewayError("authentication_error", "the admin API needs Authorization: Bearer <admin_token>")
    path = scope["path"][len(PREFIX):] or "/"
    matched = [(op, m) for op in _ops(state) if (m := op.pattern.match(path))]
    if not matched:
        raise GatewayError("not_found_error", f"no admin route {scope['method']} {scope['path']}")
    method = "GET" if scope["method"] == "HEAD" else scope["method"]
    chosen = next(((op, m) for op, m in matched if op.method == method), None)
    if chosen is None:
        allowed = ", ".join(sorted({op.method for op, _ in matched}))
        raise GatewayError("invalid_request_error", f"{scope['method']} is not allowed on {scope['path']}; "
                                                    f"use {allowed}", status=405, headers={"allow": allowed})
    op, m = chosen
    body: dict[str, Any] = {}
    if op.body:
        raw = await read_body(receive, MAX_BODY, headers.get(b"content-length"))
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise GatewayError("invalid_request_error", "the request body is not valid JSON") from None
        _check(parsed, sch.BODIES[op.body], "body")
        body = parsed
    query = _query(scope.get("query_string", b""), op.query)
    try:
        return op.status, await op.handler(Call(state, m.groupdict(), query, body))
    except e.Invalid as exc:
        raise GatewayError("invalid_request_error", str(exc), param=exc.field) from None
    except e.NotFound as exc:
        raise GatewayError("not_found_error", str(exc)) from None
    except e.Conflict as exc:
        raise GatewayError("invalid_request_error", str(exc), status=409) from None
    except e.Forbidden as exc:
        raise GatewayError("permission_error", str(exc)) from None
    except e.Throttled as exc:
        raise GatewayError("rate_limit_error", str(exc), headers={"retry-after": str(exc.retry_after)}) from None
    except e.LoginFailed as exc:
        raise GatewayError("authentication_error", str(exc)) from None
    except e.NotConfigured as exc:
        raise GatewayError("not_found_error", str(exc)) from None
    except e.Unavailable as exc:
        raise GatewayError("api_error", str(exc), status=502) from None
    except IntegrityError:  # two requests racing to create the same thing: the database kept one
        raise GatewayError("invalid_request_error", "this conflicts with a record made at the same moment; "
                                                    "read it back and retry if needed", status=409) from None
    except ValueError as exc:  # the store's own checks (an email it refuses, a cursor it did not make)
        raise GatewayError("invalid_request_error", str(exc)) from None


def _query(raw: bytes, spec: dict[str, tuple[dict[str, Any], bool]]) -> dict[str, Any]:
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise GatewayError("invalid_request_error", "the query string is not UTF-8") from None
    got: dict[str, Any] = {}
    for k, v in pairs:
        if k not in spec:
            raise GatewayError("invalid_request_error", f"{k[:50]!r}: unknown query parameter"
                               + (f" (expected {', '.join(spec)})" if spec else ""), param=k[:50])
        got[k] = v
    for name, (schema, required) in spec.items():
        if name not in got:
            if required:
                raise GatewayError("invalid_request_error", f"{name}: query parameter required", param=name)
            continue
        value: Any = got[name]
        if schema.get("type") == "integer":
            if not re.fullmatch(r"\d{1,9}", value):
                raise GatewayError("invalid_request_error", f"{name}: expected a whole number", param=name)
            value = int(value)
        _check(value, schema, name)
        got[name] = value
    return got


_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _check(value: Any, schema: dict[str, Any], where: str) -> None:
    """The subset of JSON Schema the admin bodies use; the error names the field at fault."""
    def bad(message: str) -> GatewayError:
        return GatewayError("invalid_request_error", f"{where}: {message}", param=where)

    if "anyOf" in schema:
        for alt in schema["anyOf"]:
            try:
                _check(value, alt, where)
                return
            except GatewayError:
                continue
        raise bad("does not have an accepted type")
    if "enum" in schema and value not in schema["enum"]:
        raise bad(f"expected one of {', '.join(map(str, schema['enum']))}")
    t = schema.get("type")
    if t is not None and not _TYPES[t](value):
        raise bad(f"expected {'an' if t[0] in 'aeiou' else 'a'} {t}")
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", 1 << 30):
            raise bad(f"at most {schema['maxLength']} characters")
        if len(value) < schema.get("minLength", 0):
            raise bad("must not be empty")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise bad(f"at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise bad(f"at most {schema['maximum']}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", 1 << 30):
            raise bad(f"at most {schema['maxItems']} items")
        for i, item in enumerate(value):
            _check(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, dict) and t == "object":
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise GatewayError("invalid_request_error", f"{name}: field required", param=name)
        for name, item in value.items():
            if name not in props:
                if schema.get("additionalProperties") is False:
                    raise GatewayError("invalid_request_error", f"{name}: unknown field", param=name)
                continue
            _check(item, props[name], name if where == "body" else f"{where}.{name}")
