"""``mailflow quarantine``: mail that could not become part of a ticket."""

from __future__ import annotations

import json
import sys

import click
from sqlalchemy import select
from sqlalchemy.orm import undefer

from mailflow.cli.base import _iso, _open_db, fail, handles_errors
from mailflow.store.models import QuarantinedMessage

# -- quarantine ---------------------------------------------------------------------------

@click.group()
def quarantine() -> None:
    """Mail that could not become part of a ticket, kept with the reason."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def quarantine_list(ctx: click.Context, as_json: bool) -> None:
    """Quarantined messages, with why."""
    _, sessions = _open_db(ctx)
    with sessions() as s:
        rows = s.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)).all()
    items = [{"id": q.id, "mailbox": q.mailbox, "uid": q.uid, "reason": q.reason,
              "at": _iso(q.created_at)} for q in rows]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("quarantine empty")
    for i in items:
        click.echo(f"#{i['id']:<5} {i['at']}  {i['mailbox']} uid {i['uid']}: {i['reason']}")


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
