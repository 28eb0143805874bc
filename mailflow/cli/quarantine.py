"""``mailflow quarantine``: mail that could not become part of a ticket."""

from __future__ import annotations

import sys

import click
from sqlalchemy import select
from sqlalchemy.orm import undefer

from mailflow.cli.base import _iso, _open_db, fail, handles_errors
from mailflow.cli.tables import Col, emit_json, local_time, print_table
from mailflow.store.db import transaction
from mailflow.store.models import QuarantinedMessage


@click.group()
def quarantine() -> None:
    """Mail that could not become part of a ticket, kept with the reason."""


QUARANTINE_COLUMNS = [Col("ID", "id", justify="right"), Col("Kept", "kept"),
                      Col("Mailbox", "mailbox", 30), Col("UID", "uid", justify="right"),
                      Col("State", "state"), Col("Reason", "reason", 70)]


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handles_errors
def quarantine_list(ctx: click.Context, as_json: bool) -> None:
    """Quarantined messages, with why."""
    settings, sessions = _open_db(ctx)
    with sessions() as s:
        rows = s.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)).all()
    items = [{"id": q.id, "mailbox": q.mailbox, "uid": q.uid, "reason": q.reason,
              "at": _iso(q.created_at), "released_at": _iso(q.released_at)} for q in rows]
    if as_json:
        emit_json(items)
        return
    tz = settings.tz
    print_table(QUARANTINE_COLUMNS,
                [{**i, "kept": local_time(q.created_at, tz),
                  "state": "held" if q.released_at is None
                  else f"released {local_time(q.released_at, tz)}"}
                 for i, q in zip(items, rows, strict=True)],
                "quarantine empty", {"held": "yellow"})


@quarantine.command("drop")
@click.argument("item_id", type=int)
@click.pass_context
@handles_errors
def quarantine_drop(ctx: click.Context, item_id: int) -> None:
    """Delete a quarantined message for good (after `quarantine show`, if in doubt).

    Only mailflow's copy goes: the mail stays in the mailbox on the server, marked
    processed, and is not fetched again.
    """
    _, sessions = _open_db(ctx)
    with transaction(sessions) as s:
        q = s.get(QuarantinedMessage, item_id)
        if q is None:
            fail(f"no quarantined message {item_id}")
        where = f"{q.mailbox} uid {q.uid}" if q.mailbox else "no mailbox"
        s.delete(q)
    click.echo(f"quarantined message #{item_id} ({where}) dropped")


@quarantine.command("show")
@click.argument("item_id", type=int)
@click.pass_context
@handles_errors
def quarantine_show(ctx: click.Context, item_id: int) -> None:
    """Write a quarantined message's raw bytes to standard output."""
    _, sessions = _open_db(ctx)
    with sessions() as s:
        q = s.scalars(select(QuarantinedMessage).where(QuarantinedMessage.id == item_id)
                      .options(undefer(QuarantinedMessage.raw))).first()
        if q is None:
            fail(f"no quarantined message {item_id}")
        sys.stdout.buffer.write(q.raw)
