"""``mailflow outbox``: mail waiting to be sent."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from mailflow.cli.base import _iso, _open_db, fail, handles_errors
from mailflow.store.models import OutboxRow
from mailflow.tickets import ref

# -- outbox -------------------------------------------------------------------------------

@click.group()
def outbox() -> None:
    """Inspect and manage mail waiting to be sent."""


@outbox.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include sent and dropped mail.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def outbox_list(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Mail waiting, retrying or failed."""
    settings, sessions = _open_db(ctx)
    with sessions() as s:
        q = select(OutboxRow).order_by(OutboxRow.id)
        if not show_all:
            q = q.where(OutboxRow.status.in_(["pending", "sending", "failed"]))
        rows = s.scalars(q).all()
    items = [{"id": o.id, "ticket": ref(settings.ticket_prefix, o.ticket_id)
              if o.ticket_id else None, "kind": o.kind, "to": o.recipient, "status": o.status,
              "attempts": o.attempts, "next_attempt_at": _iso(o.next_attempt_at),
              "last_error": o.last_error} for o in rows]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("outbox empty")
    for i in items:
        click.echo(f"#{i['id']:<6} {i['status']:<8} {i['kind']:<16} {i['ticket'] or '-':<10} "
                   f"{i['to']:<30} attempts {i['attempts']}"
                   + (f"  {i['last_error']}" if i["last_error"] else ""))


@outbox.command("retry")
@click.argument("row_id", type=int)
@click.pass_context
@handles_errors
def outbox_retry(ctx: click.Context, row_id: int) -> None:
    """Send a failed or waiting mail again now (and lift its recipient's suppression)."""
    from mailflow import outbox as ob
    from mailflow.clock import SystemClock

    _, sessions = _open_db(ctx)
    try:
        row = ob.retry(sessions, row_id, SystemClock().now())
    except ValueError as exc:
        fail(str(exc))
    if row is None:
        fail(f"no outbox row {row_id}")
    click.echo(f"outbox #{row_id} to {row.recipient} queued again")


@outbox.command("drop")
@click.argument("row_id", type=int)
@click.pass_context
@handles_errors
def outbox_drop(ctx: click.Context, row_id: int) -> None:
    """Never send this mail."""
    from mailflow import outbox as ob

    _, sessions = _open_db(ctx)
    try:
        row = ob.drop(sessions, row_id)
    except ValueError as exc:
        fail(str(exc))
    if row is None:
        fail(f"no outbox row {row_id}")
    click.echo(f"outbox #{row_id} to {row.recipient} dropped")
