"""``bytespike tasks list|show|cancel|purge`` and ``bytespike webhooks secret``."""

from __future__ import annotations

import time
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from bytespike.accounts.services import Services
from bytespike.cli import ConfigOpt, JsonOpt, _json, _run, _table_console
from bytespike.config import Settings
from bytespike.errors import GatewayError
from bytespike.store import tasks as store
from bytespike.store.accounts import NotFound
from bytespike.tasks.service import Tasks

tasks_app = typer.Typer(help="Queued tasks (/v1/tasks): list, inspect, cancel, purge.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Task webhooks: the account's signing secret.", no_args_is_help=True)


def _service(svc: Services, s: Settings) -> Tasks:
    return Tasks(svc.db, s.tasks)


async def _call(coro: Any) -> Any:
    try:
        return await coro
    except GatewayError as exc:
        raise NotFound(exc.message) from None


@tasks_app.command("list")
def tasks_list(
    email_or_org: str | None = typer.Argument(None, help="Only this person's or organization's tasks."),
    status: str | None = typer.Option(None, "--status", help="queued, running, succeeded, failed, canceled, expired."),
    limit: int = typer.Option(20, "--limit", help="How many, newest first (at most 100)."),
    after: str | None = typer.Option(None, "--after", help="Continue after this task id."),
    config: str | None = ConfigOpt, as_json: bool = JsonOpt,
) -> None:
    """Tasks, newest first."""

    async def go(a: Services, s: Settings) -> dict[str, Any]:
        account_id = (await a.store.account(email_or_org))["id"] if email_or_org else None
        return await _call(_service(a, s).page(account_id, status=status, after=after, limit=limit))  # type: ignore[no-any-return]

    res = _run(config, go)
    if as_json:
        _json(res)
        return
    t = Table("task", "status", "endpoint", "model", "attempts", "created (UTC)", "cost (USD)")
    for task in res["data"]:
        t.add_row(task["id"], task["status"], task["endpoint"], escape(task["model"]), str(task["attempts"]),
                  task["created_at"] or "", task["cost_usd"] or "")
    con = _table_console()
    con.print(t)
    if res["has_more"]:
        con.print(f"more: --after {res['last_id']}")


@tasks_app.command("show")
def tasks_show(task_id: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """One task: status, result or error, cost, and its webhook deliveries."""

    async def go(a: Services, s: Settings) -> dict[str, Any]:
        return await _call(_service(a, s).get(None, task_id))  # type: ignore[no-any-return]

    res = _run(config, go)
    if as_json:
        _json(res)
        return
    con = _table_console()
    for k in ("id", "status", "endpoint", "model", "attempts", "created_at", "started_at", "finished_at",
              "cost_usd", "request_id", "webhook_url", "webhook_status"):
        con.print(f"{k}: {escape(str(res.get(k)))}")
    for k in ("result", "error", "usage", "metadata"):
        if res.get(k) is not None:
            con.print(f"{k}: {escape(orjson.dumps(res[k]).decode())}")
    for d in res.get("webhook_deliveries") or []:
        con.print(f"delivery {d['attempt']} at {d['at']}: {d['status_code'] or ''} {escape(d['error'] or '')}")


@tasks_app.command("cancel")
def tasks_cancel(task_id: str, config: str | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Cancel a queued or running task (a running one is stopped by its gateway, unbilled)."""

    async def go(a: Services, s: Settings) -> dict[str, Any]:
        return await _call(_service(a, s).cancel(None, task_id))  # type: ignore[no-any-return]

    res = _run(config, go)
    if as_json:
        _json(res)
        return
    _table_console().print(f"{res['id']}: {res['status']}")


@tasks_app.command("purge")
def tasks_purge(
    older_than_days: float | None = typer.Option(None, "--older-than-days",
                                                 help="Default: tasks.retention_days from the configuration."),
    config: str | None = ConfigOpt, as_json: bool = JsonOpt,
) -> None:
    """Delete finished tasks (results, errors, delivery logs) older than the retention period."""

    async def go(a: Services, s: Settings) -> dict[str, Any]:
        days = s.tasks.retention_days if older_than_days is None else older_than_days
        n = await _service(a, s).purge(days)
        return {"purged": n, "older_than_days": days}

    res = _run(config, go)
    if as_json:
        _json(res)
        return
    _table_console().print(f"purged {res['purged']} task(s) finished more than {res['older_than_days']} days ago")


@webhooks_app.command("secret")
def webhooks_secret(
    email_or_org: str,
    rotate: bool = typer.Option(False, "--rotate", help="Replace the secret (the old one stops working at once)."),
    config: str | None = ConfigOpt, as_json: bool = JsonOpt,
) -> None:
    """The account's webhook signing secret (whsec_...), made on first use."""

    async def go(a: Services, s: Settings) -> dict[str, Any]:
        acct = await a.store.account(email_or_org)
        async with a.db.write() as conn:
            secret = await store.webhook_secret(conn, acct["id"], time.time(), rotate=rotate)
        return {"account": acct["name"], "secret": secret, "rotated": rotate}

    res = _run(config, go)
    if as_json:
        _json(res)
        return
    _table_console().print(res["secret"])
