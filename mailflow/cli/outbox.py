"""``mailflow outbox``: mail waiting to be sent."""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import undefer

from mailflow.cli.base import _iso, _open_db, fail, handles_errors
from mailflow.cli.tables import Col, emit_json, local_time, print_table
from mailflow.store.models import OutboxRow
from mailflow.tickets import ref


@click.group()
def outbox() -> None:
    """Inspect and manage mail waiting to be sent."""


OUTBOX_COLUMNS = [Col("ID", "id", justify="right"), Col("Status", "status"),
                  Col("Kind", "kind", 18), Col("Ticket", "ticket"), Col("To", "to", 32),
                  Col("Tries", "attempts", justify="right"), Col("Next try", "next"),
                  Col("Last error", "last_error", 50)]
OUTBOX_STYLES = {"failed": "red", "pending": "yellow", "sending": "cyan", "sent": "green",
                 "dropped": "dim"}


def _outbox_dict(prefix: str, o: OutboxRow) -> dict[str, Any]:
    # The writer put the reference of the ticket's own desk into the context.
    named = o.full_context().get("ticket", {}).get("ref") if o.ticket_id else None
    return {"id": o.id, "ticket": named or (ref(prefix, o.ticket_id) if o.ticket_id else None),
            "kind": o.kind, "to": o.recipient, "status": o.status, "attempts": o.attempts,
            "next_attempt_at": _iso(o.next_attempt_at), "created_at": _iso(o.created_at),
            "sent_at": _iso(o.sent_at), "message_id": o.message_id,
            "last_error": o.last_error}


@outbox.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include sent and dropped mail.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
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
    items = [_outbox_dict(settings.ticket_prefix, o) for o in rows]
    if as_json:
        emit_json(items)
        return
    tz = settings.tz
    print_table(OUTBOX_COLUMNS, [{**i, "next": local_time(o.next_attempt_at, tz)
                                  if o.status in ("pending", "failed", "sending") else None}
                                 for i, o in zip(items, rows, strict=True)],
                "outbox empty", OUTBOX_STYLES)


@outbox.command("show")
@click.argument("row_id", type=int)
@click.pass_context
@handles_errors
def outbox_show(ctx: click.Context, row_id: int) -> None:
    """Write one outbox mail as it goes (or went) out, headers and all.

    Mail already attempted is shown byte for byte as sent; mail not yet attempted is
    rendered now from its template, as the next attempt would render it.
    """
    from mailflow.clock import SystemClock
    from mailflow.compose import Composer
    from mailflow.outbox import render

    settings, sessions = _open_db(ctx)
    with sessions() as s:
        row = s.scalars(select(OutboxRow).where(OutboxRow.id == row_id)
                        .options(undefer(OutboxRow.raw))).first()
        if row is None:
            fail(f"no outbox row {row_id}")
        raw = row.raw
        if raw is None:
            raw = render(row, Composer(settings.templates_path), settings, SystemClock().now())
    out = sys.stdout.buffer  # click.get_binary_stream is deprecated (Click 9 removes it)
    out.write(raw if raw.endswith(b"\n") else raw + b"\n")
    out.flush()


def _row_action(ctx: click.Context, row_id: int, action: str, done: str) -> None:
    """Retry or drop one row, through the one writer, as ``cli:$USER``."""
    from mailflow import outbox_admin as ob
    from mailflow.accounts import apply_context
    from mailflow.clock import SystemClock
    from mailflow.desk import actor

    settings, sessions = _open_db(ctx)
    now = SystemClock().now()
    apply_ctx = apply_context(settings, now)
    act = ob.retry if action == "retry" else ob.drop
    try:
        row = act(sessions, row_id, now, apply_ctx, actor())
    except ValueError as exc:
        fail(str(exc))
    if row is None:
        fail(f"no outbox row {row_id}")
    click.echo(f"outbox #{row_id} to {row.recipient} {done}")


@outbox.command("retry")
@click.argument("row_id", type=int)
@click.pass_context
@handles_errors
def outbox_retry(ctx: click.Context, row_id: int) -> None:
    """Send a failed or waiting mail again now (and lift its recipient's suppression)."""
    _row_action(ctx, row_id, "retry", "queued again")


@outbox.command("drop")
@click.argument("row_id", type=int)
@click.pass_context
@handles_errors
def outbox_drop(ctx: click.Context, row_id: int) -> None:
    """Never send this mail."""
    _row_action(ctx, row_id, "drop", "dropped")
