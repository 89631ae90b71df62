"""How ``bytespike serve`` builds its app in each worker, including the demo."""

from __future__ import annotations

import dataclasses
import os
import sys

import orjson
from starlette.routing import Mount

from bytespike.accounts import keys as auth
from bytespike.billing import money
from bytespike.config import load
from bytespike.demo import simulator
from bytespike.http.app import create_app
from bytespike.state import State

DEMO_EMAIL = "demo@bytespike.local"
DEMO_USD = "5"


def demo_settings(settings, host: str, port: int):  # type: ignore[no-untyped-def]
    """Point every provider at the built-in simulated upstream."""
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    providers = {
        name: dataclasses.replace(p, base_url=f"http://{local}:{port}/_demo/{p.type}", api_key="demo")
        for name, p in settings.providers.items()
    }
    models = {
        mid: dataclasses.replace(m, display_name=f"{m.display_name or mid} (demo)")
        for mid, m in settings.models.items()
    }
    return dataclasses.replace(settings, providers=providers, models=models)


async def _demo_account(state: State) -> None:
    accounts = state.accounts
    try:
        acct = await accounts.account(DEMO_EMAIL)
    except LookupError:
        await accounts.create_user(DEMO_EMAIL)
        acct = await accounts.account(DEMO_EMAIL)
        await accounts.post(acct["id"], "topup", money.parse_usd(DEMO_USD), "demo credit")
    key, digest, prefix = auth.mint()
    await accounts.create_key(acct["id"], digest, prefix, "multi-vendor" if "multi-vendor" in state.settings.groups
                              else next(iter(state.settings.groups)), user_id=acct["user_id"], name="demo")
    bal, _ = await accounts.balance(acct["id"])
    url = os.environ.get("BYTESPIKE_PUBLIC_URL") or _base_url()
    print(
        "\n=== ByteSpike DEMO: every answer comes from a simulated upstream, no real model is called ===\n"
        f"demo account {DEMO_EMAIL}, balance {money.format_usd(bal)} USD (demo credit)\n"
        "Paste these two lines into your shell:\n\n"
        f"export ANTHROPIC_BASE_URL={url}\n"
        f"export ANTHROPIC_API_KEY={key}\n",
        flush=True,
        file=sys.stdout,
    )


def _base_url() -> str:
    opts = orjson.loads(os.environ.get("BYTESPIKE_SERVE", "{}"))
    host = opts.get("host", "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{opts.get('port', 8080)}"


def factory():  # type: ignore[no-untyped-def]
    # The GIL switch interval, for tuning with the bench; Python's default (5 ms) measured best.
    if os.environ.get("BYTESPIKE_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BYTESPIKE_SWITCH_INTERVAL"]))
    opts = orjson.loads(os.environ.get("BYTESPIKE_SERVE", "{}"))
    settings = load(opts.get("config"))
    if opts.get("demo"):
        settings = demo_settings(settings, opts.get("host", "127.0.0.1"), int(opts.get("port", 8080)))
        return create_app(settings, demo=True, extra_routes=[Mount("/_demo", simulator.app)],
                          on_ready=_demo_account)
    return create_app(settings, processes=int(opts.get("workers", 1)))
