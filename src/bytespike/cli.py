"""The ``bytespike`` command: run the gateway and manage people, wallets and keys."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bytespike.accounts.errors import Actor, Conflict, Forbidden, NotFound, Unavailable
from bytespike.accounts.services import Services
from bytespike.billing import limits as lim
from bytespike.config import ConfigError, Settings, load
from bytespike.store.accounts import Accounts
from bytespike.store.db import Database, upgrade
from bytespike.store.redis import announce_key_change

app = typer.Typer(help="ByteSpike: a self-hosted LLM gateway.", no_args_is_help=True, add_completion=False)
users_app = typer.Typer(help="People.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organizations (members share one wallet).", no_args_is_help=True)
wallet_app = typer.Typer(help="Wallets: top up and inspect.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
codes_app = typer.Typer(help="Redeem codes: single-use credit for a wallet.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(orgs_app, name="orgs")
app.add_typer(wallet_app, name="wallet")
app.add_typer(keys_app, name="keys")
app.add_typer(codes_app, name="redeem-codes")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

ConfigOpt = typer.Option(None, "--config", help="Configuration file (default: ./bytespike.yaml, else built-in).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout.")


def _settings(config: str | None) -> Settings:
    try:
        return load(config)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


ACTOR = Actor.operator(f"cli:{os.environ.get('USER') or 'operator'}")


def _run(config: str | None, fn: Callable[[Services, Settings], Awaitable[T]]) -> T:
    """Run ``fn`` on the account services over the configured database."""
    settings = _settings(config)

    async def go() -> T:
        await upgrade(settings.database_url)
        db = Database(settings.database_url)
        url = settings.redis_url
        announce = (lambda key_id: announce_key_change(url, key_id)) if url else None
        try:
            return await fn(Services(db, settings, accounts=Accounts(db, announce=announce)), settings)
        finally:
            await db.close()

    try:
        return asyncio.run(go())
    except (NotFound, Conflict, ValueError, Forbidden, Unavailable) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def _json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")


# ---------------------------------------------------------------- serve


@app.command()
def serve(
    config: str | None = ConfigOpt,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    workers: int = typer.Option(1, help="Worker processes."),
    demo: bool = typer.Option(False, "--demo", help="Serve the whole catalogue from a built-in simulated upstream, "
                                                    "with a demo account holding 5 USD. No provider keys needed."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Run the gateway."""
    import uvicorn

    settings = _settings(config)
    if demo:
        workers = 1
    bounds = settings.server
    os.environ["BYTESPIKE_SERVE"] = orjson.dumps({"config": config, "demo": demo, "host": host, "port": port,
                                                 "workers": workers,
                                                 "limits": dataclasses.asdict(bounds)}).decode()
    db_note = settings.database_url
    err.print(f"ByteSpike {'DEMO ' if demo else ''}listening on http://{host}:{port} "
              f"(config: {settings.source}, database: {db_note.split('@')[-1]})")
    uvicorn.run("bytespike.http.serving:factory", factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http="bytespike.http.protocol:BoundedHttpToolsProtocol", ws="none",
                log_level=log_level, access_log=False, timeout_keep_alive=bounds.keepalive_timeout,
                limit_concurrency=bounds.max_connections,
                timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout), proxy_headers=False, server_header=False)


# ---------------------------------------------------------------- users and orgs


@users_app.command("create")
def users_create(
    email: str,
    org: str | None = typer.Option(None, "--org", help="Join (or create) this organization; its wallet pays."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read a console password from stdin."),
    config: str | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create a person (with their own wallet, or a member of an organization)."""
    pw = sys.stdin.readline().rstrip("\n") if password_stdin else None
    user = _run(config, lambda s, _: s.people.create(ACTOR, email, pw, org))
    if as_json:
        _json(user)
    else:
        out.print(f"created user [bold]{user['email']}[/bold] ({user['id']})" + (f" in org {org}" if org else ""))


@users_app.command("list")
def users_list(config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Everyone, oldest first, with their organization and role."""
    rows = _run(config, lambda s, _: _all(lambda cur: s.people.page(ACTOR, 200, cur)))
    if as_json:
        _json({"users": rows})
        return
    t = Table("id", "email", "org", "role", "created")
    for r in rows:
        t.add_row(r["id"], r["email"], r["org"] or "", r["role"] or "", _iso(r["created_at"]))
    _table_console().print(t)


async def _all(fetch: Callable[[str | None], Awaitable[Any]]) -> list[dict[str, Any]]:
    """Every item of a paginated list."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        got = await fetch(cursor)
        items.extend(got.items)
        cursor = got.next_cursor
        if cursor is None:
            return items


@orgs_app.command("create")
def orgs_create(name: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Create an organization whose members share its wallet."""
    org = _run(config, lambda s, _: s.orgs.create(ACTOR, name))
    if as_json:
        _json(org)
    else:
        out.print(f"created organization [bold]{name}[/bold] ({org['id']})")


@orgs_app.command("list")
def orgs_list(config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Every organization with its number of members."""
    rows = _run(config, lambda s, _: _all(lambda cur: s.orgs.page(ACTOR, 200, cur)))
    if as_json:
        _json({"orgs": rows})
        return
    t = Table("id", "name", "members", "created")
    for r in rows:
        t.add_row(r["id"], escape(r["name"]), str(r["members"]), _iso(r["created_at"]))
    _table_console().print(t)


@orgs_app.command("show")
def orgs_show(name: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """An organization's members and their roles."""
    org = _run(config, lambda s, _: s.orgs.show(ACTOR, name))
    if as_json:
        _json(org)
        return
    t = Table("email", "role", "since", title=escape(org["name"]))
    for m in org["members"]:
        t.add_row(m["email"], m["role"], _iso(m["created_at"]))
    _table_console().print(t)


@orgs_app.command("add-member")
def orgs_add_member(name: str, email: str,
                    role: str = typer.Option("member", "--role", help="owner or member."),
                    config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Add a person to an organization (created if new), or change their role."""
    res = _run(config, lambda s, _: s.orgs.add_member(ACTOR, name, email, role))
    if as_json:
        _json(res)
    else:
        out.print(f"{res['email']} is now {res['role']} of {res['org']}")


@orgs_app.command("remove-member")
def orgs_remove_member(name: str, email: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Remove a member: they go back to their own wallet and their keys on the org's are revoked."""
    res = _run(config, lambda s, _: s.orgs.remove_member(ACTOR, name, email))
    if as_json:
        _json(res)
    else:
        out.print(f"removed {res['email']} from {res['org']} ({len(res['revoked_keys'])} key(s) revoked)")


# ---------------------------------------------------------------- wallet


@wallet_app.command("topup")
def wallet_topup(
    email_or_org: str,
    usd: str,
    note: str = typer.Option("", "--note", help="A note on the ledger entry."),
    config: str | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add USD to a wallet (a ledger entry; the balance is the ledger's sum)."""
    res = _run(config, lambda s, _: s.wallets.topup(ACTOR, email_or_org, usd, note))
    if as_json:
        _json(res)
    else:
        out.print(f"topped up {res['account']} by {res['amount_usd']} USD; balance {res['balance_usd']} USD")


@wallet_app.command("show")
def wallet_show(email_or_org: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt,
                limit: int = typer.Option(20, help="Ledger entries to show.")) -> None:
    """Balance, open holds and the latest ledger entries."""
    res = _run(config, lambda s, _: s.wallets.show(ACTOR, email_or_org, limit))
    if as_json:
        _json(res)
        return
    con = _table_console()
    con.print(f"[bold]{escape(res['account'])}[/bold]: balance {res['balance_usd']} USD, held {res['held_usd']} USD, "
              f"available {res['available_usd']} USD")
    t = Table("time (UTC)", "kind", "amount (USD)", "balance (USD)", "request", "note")
    for r in res["ledger"]:
        t.add_row(r["time"], r["kind"], r["amount_usd"], r["balance_usd"], r["request_id"] or "", escape(r["note"] or ""))
    con.print(t)


def _table_console() -> Console:
    """The terminal's console; when printing to a pipe or file, one wide enough that no cell is cut."""
    return out if out.is_terminal else Console(width=200)


# ---------------------------------------------------------------- keys


@keys_app.command("create")
def keys_create(
    email_or_org: str,
    group: str = typer.Option(..., "--group", help="The routing group (which models the key may use)."),
    name: str = typer.Option("", "--name", help="A label."),
    limit: list[str] = typer.Option([], "--limit", help="WINDOW:usd=X,requests=N,tokens=N (repeatable)."),
    max_concurrency: int | None = typer.Option(None, "--max-concurrency", help="Concurrent requests allowed."),
    config: str | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create a key; it is shown once and stored only as a hash."""
    specs = []
    for spec in limit:
        try:
            specs.append(lim.format_limit_spec(lim.parse_limit_spec(spec)))
        except ValueError as exc:
            err.print(f"[red]error:[/red] --limit {spec!r}: {exc}")
            raise typer.Exit(1) from None
    if max_concurrency is not None and max_concurrency < 1:
        err.print("[red]error:[/red] --max-concurrency must be at least 1")
        raise typer.Exit(1)

    res = _run(config, lambda s, _: s.keys.create(ACTOR, email_or_org, group=group, name=name, limits=specs,
                                                  max_concurrency=max_concurrency))
    if as_json:
        _json(res)
    else:
        out.print(f"created key {res['id']} for {res['account']} in group {group}")
        out.print(f"[bold]{res['key']}[/bold]")
        out.print("[dim]This is the only time the key is shown.[/dim]")


@keys_app.command("list")
def keys_list(email_or_org: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """The account's keys (never the keys themselves)."""
    rows = _run(config, lambda s, _: _all(lambda cur: s.keys.page(ACTOR, email_or_org, 200, cur)))
    if as_json:
        _json({"keys": rows})
        return
    t = Table("id", "prefix", "name", "group", "limits", "created", "status")
    for r in rows:
        status = "revoked" if r["revoked_at"] else "active"
        t.add_row(r["id"], r["prefix"] + "…", r["name"], r["group"], " ".join(r["limits"]) or "-",
                  _iso(r["created_at"]), status)
    out.print(t)


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Revoke a key; it stops working at once."""
    _run(config, lambda s, _: s.keys.revoke(ACTOR, key_id))
    if as_json:
        _json({"id": key_id, "revoked": True})
    else:
        out.print(f"revoked {key_id}")


@users_app.command("sign-out")
def users_sign_out(email: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """End every device sign-in (Claude Code /login through the gateway) of a person: their refresh
    tokens stop working and the keys issued with them are revoked."""

    async def go(svc: Services, s: Settings) -> dict[str, Any]:
        from bytespike.accounts.device import DeviceSignIn, SignInPolicy

        acct = await svc.store.account(email)
        if acct["user_id"] is None:
            raise NotFound(f"no user named {email!r}")
        n = await DeviceSignIn(svc.store, SignInPolicy(group=s.sign_in_group)).revoke_person(acct["user_id"])
        return {"email": email, "signed_out": n}

    res = _run(config, go)
    if as_json:
        _json(res)
    else:
        out.print(f"ended {res['signed_out']} sign-in(s) of {escape(email)}")


# ---------------------------------------------------------------- usage and models


@app.command()
def usage(email_or_org: str, since: str = typer.Option("1d", "--since", help="How far back: 30m, 5h, 1d, 7d..."),
          config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Spend and requests per model since a time, and each active key's rolling windows against its caps."""
    try:
        lim.parse_duration(since)
    except ValueError as exc:
        err.print(f"[red]error:[/red] --since: {exc}")
        raise typer.Exit(1) from None

    res = _run(config, lambda s, _: s.usage.summary(ACTOR, email_or_org, since))
    if as_json:
        _json(res)
        return
    con = _table_console()
    t = Table("model", "requests", "failed", "input", "output", "cache read", "cache write", "cost (USD)",
              title=f"{escape(res['account'])}, last {since}")
    for r in res["models"]:
        t.add_row(r["model"], str(r["requests"]), str(r["failed"]), str(r["input_tokens"]), str(r["output_tokens"]),
                  str(r["cache_read_tokens"]), str(r["cache_write_tokens"]), r["cost_usd"])
    con.print(t)
    con.print(f"total: {res['total_usd']} USD over {res['requests']} requests")
    if res["sessions"]:
        st = Table("Claude Code session", "requests", "agents", "input", "output", "cost (USD)", "last (UTC)",
                   title="per session")
        for sess in res["sessions"]:
            st.add_row(escape(sess["session_id"]), str(sess["requests"]), str(sess["agents"]),
                       str(sess["input_tokens"]), str(sess["output_tokens"]), sess["cost_usd"],
                       time.strftime("%Y-%m-%d %H:%M", time.gmtime(sess["last_at"])))
        con.print(st)
    for k in res["keys"]:
        w = Table("window", "spend (USD)", "requests", "tokens", "oldest ages out (UTC)",
                  title=f"key {k['id']}" + (f" ({escape(k['name'])})" if k["name"] else "") + f", group {k['group']}")
        for x in k["windows"]:
            w.add_row(x["window"], _of(x["spend_usd"], x["usd_cap"]), _of(x["requests"], x["requests_cap"]),
                      _of(x["tokens"], x["tokens_cap"]), (x["resets_at"] or "-").replace("T", " ").rstrip("Z"))
        con.print(w)


# ---------------------------------------------------------------- redeem codes and audit


@codes_app.command("create")
def codes_create(
    usd: str,
    count: int = typer.Option(1, "--count", help="How many codes."),
    expires_in: str | None = typer.Option(None, "--expires-in", help="Valid for this long: 12h, 7d, 30d..."),
    note: str = typer.Option("", "--note", help="A note kept with the codes."),
    config: str | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Make single-use codes worth USD each; they are shown once and stored only as hashes."""
    res = _run(config, lambda s, _: s.redeem_codes.create(ACTOR, usd, count, expires_in, note))
    if as_json:
        _json(res)
        return
    out.print(f"{len(res['codes'])} code(s) worth {res['usd']} USD each"
              + (f", valid until {_iso(res['expires_at'])} UTC" if res["expires_at"] else ""))
    for code in res["codes"]:
        out.print(f"[bold]{code}[/bold]")
    out.print("[dim]This is the only time the codes are shown.[/dim]")


@codes_app.command("list")
def codes_list(config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Every code's value and state (never the code itself)."""
    rows = _run(config, lambda s, _: _all(lambda cur: s.redeem_codes.page(ACTOR, 200, cur)))
    if as_json:
        _json({"redeem_codes": rows})
        return
    t = Table("id", "prefix", "USD", "status", "created", "expires", "redeemed by")
    for r in rows:
        t.add_row(r["id"], r["prefix"] + "…", r["usd"], r["status"], _iso(r["created_at"]), _iso(r["expires_at"]),
                  r["redeemed_by"] or "")
    _table_console().print(t)


@codes_app.command("redeem")
def codes_redeem(code: str, email_or_org: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Redeem a code into a wallet."""
    res = _run(config, lambda s, _: s.redeem_codes.redeem(ACTOR, code, email_or_org))
    if as_json:
        _json(res)
    else:
        out.print(f"credited {res['account']} with {res['amount_usd']} USD; balance {res['balance_usd']} USD")


@app.command()
def audit(limit: int = typer.Option(50, "--limit", help="Entries to show, newest first."),
          action: str | None = typer.Option(None, "--action", help="Only this action, e.g. key.revoke."),
          config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """The audit log: who did what to which account, key or code, and when."""
    got = _run(config, lambda s, _: s.audit.page(ACTOR, max(1, min(limit, 200)), None, action=action))
    if as_json:
        _json({"entries": got.items, "next_cursor": got.next_cursor})
        return
    t = Table("time (UTC)", "actor", "action", "target", "details")
    for r in got.items:
        t.add_row(_iso(r["created_at"]), escape(r["actor"]), r["action"], escape(r["target"]),
                  escape(orjson.dumps(r["details"]).decode()))
    _table_console().print(t)


def _of(used: Any, cap: Any) -> str:
    return f"{used} of {cap}" if cap is not None else str(used)


@app.command()
def models(config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """The model catalogue with prices and routes."""
    from bytespike.gateway.catalogue import Catalogue

    s = _settings(config)
    cat = Catalogue(s)
    rows: list[dict[str, Any]] = [{"id": m.id, "aliases": list(m.aliases), "price": {k: str(v) for k, v in m.price.items()},
             "protocols": cat.protocols(m), "deployments": [dataclasses.asdict(d) for d in m.deployments]}
            for m in s.models.values()]
    if as_json:
        _json({"models": rows})
        return
    t = Table("model", "aliases", "input", "output", "cache read", "protocols")
    for r in rows:
        p = r["price"]
        t.add_row(r["id"], ", ".join(r["aliases"]), p.get("input", ""), p.get("output", ""), p.get("cache_read", ""),
                  ", ".join(r["protocols"]))
    out.print(t)


def _iso(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else ""


def main() -> None:
    app()


def _register() -> None:
    """Command groups that live beside their service (they import this module's helpers)."""
    from bytespike.tasks.commands import tasks_app, webhooks_app

    app.add_typer(tasks_app, name="tasks")
    app.add_typer(webhooks_app, name="webhooks")


_register()
