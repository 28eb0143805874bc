"""``mailflow tickets resolve|close|reopen|assign|note`` and ``mailflow quarantine release``.

The desk from the command line. These commands only parse and print: what an action
does (and what it refuses) is :mod:`mailflow.desk`, which writes through the one writer,
so a CLI action leaves the same event trail as mail does, with actor ``cli:$USER``.
Importing this module adds the commands to the ``tickets`` and ``quarantine`` groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import click

from mailflow import desk
from mailflow.accounts import account_for_key, with_defaults
from mailflow.classify import RuleSet, load_rules
from mailflow.cli.base import (
    EXIT_CONFIG,
    _open_db,
    _settings,
    fail,
    handles_errors,
    ticket_arg,
    ticket_name,
)
from mailflow.cli.quarantine import quarantine
from mailflow.cli.tickets import tickets
from mailflow.clock import SystemClock
from mailflow.ingest import Ingestor
from mailflow.linking import TicketFacts
from mailflow.tickets.effects import Effect

# (ticket as it is, actor, ticket prefix, now) -> effects
Build = Callable[[TicketFacts, str, str, datetime], Sequence[Effect]]


def _act(ctx: click.Context, ticket: str, build: Build, done: str) -> None:
    """One desk action on one ticket, in one transaction; a refusal is one line, exit 1."""
    settings, sessions = _open_db(ctx)
    tid = ticket_arg(settings, ticket)
    by, now = desk.actor(), SystemClock().now()
    apply_ctx = Ingestor(settings, sessions).apply_context(now)
    try:
        prefix = ticket_name(settings, sessions, tid).rpartition("-")[0]
        desk.act(sessions, tid, lambda t: build(t, by, prefix, now),
                 apply_ctx)
    except desk.DeskError as exc:
        fail(str(exc))
    click.echo(f"{ticket_name(settings, sessions, tid)} {done}")


@tickets.command("resolve")
@click.argument("ticket")
@click.option("--note", "note_text", help="The resolution, kept as an internal note.")
@click.pass_context
@handles_errors
def tickets_resolve(ctx: click.Context, ticket: str, note_text: str | None) -> None:
    """Mark a ticket resolved (a customer reply reopens it)."""
    _act(ctx, ticket, lambda t, by, p, _now: desk.resolve(t, by, note_text, p), "resolved")


@tickets.command("close")
@click.argument("ticket")
@click.pass_context
@handles_errors
def tickets_close(ctx: click.Context, ticket: str) -> None:
    """Close a ticket (a reply after the reopen window opens a new, linked one)."""
    _act(ctx, ticket, lambda t, by, p, _now: desk.close(t, by, p), "closed")


@tickets.command("reopen")
@click.argument("ticket")
@click.option("--reason", required=True, help="Why: kept on the event trail.")
@click.pass_context
@handles_errors
def tickets_reopen(ctx: click.Context, ticket: str, reason: str) -> None:
    """Reopen a resolved or closed ticket."""
    _act(ctx, ticket, lambda t, by, p, now: desk.reopen(t, by, reason, now, p), "reopened")


@tickets.command("assign")
@click.argument("ticket")
@click.argument("group")
@click.option("--reason", help="Why: kept on the event trail.")
@click.pass_context
@handles_errors
def tickets_assign(ctx: click.Context, ticket: str, group: str, reason: str | None) -> None:
    """Give a ticket to GROUP (one of the groups in the rules' groups.yaml)."""
    known = frozenset(load_rules(_settings(ctx).rules_path).groups)
    if group not in known:
        fail(f"unknown group {group!r} (known: {', '.join(sorted(known))})", EXIT_CONFIG)
    _act(ctx, ticket,
         lambda t, by, p, _now: desk.assign(t, group, known, by, reason, p),
         f"assigned to {group}")


@tickets.command("note")
@click.argument("ticket")
@click.argument("text")
@click.pass_context
@handles_errors
def tickets_note(ctx: click.Context, ticket: str, text: str) -> None:
    """Add an internal note to a ticket's event trail (no mail is sent)."""
    _act(ctx, ticket, lambda t, by, _p, _now: desk.note(t, text, by), "noted")


@quarantine.command("release")
@click.argument("item_id", type=int)
@click.pass_context
@handles_errors
def quarantine_release(ctx: click.Context, item_id: int) -> None:
    """Process a quarantined message again with the current rules, after a fix."""
    settings, sessions = _open_db(ctx)
    rules = load_rules(settings.rules_path)

    def pick(mailbox: str) -> tuple[Ingestor, RuleSet]:
        account = account_for_key(settings, mailbox)
        return Ingestor(settings, sessions, account), with_defaults(rules, account.defaults)

    try:
        r = desk.release(sessions, pick, item_id, SystemClock().now(), desk.actor())
    except desk.DeskError as exc:
        fail(str(exc))
    name = ticket_name(settings, sessions, r.ticket) if r.ticket is not None else None
    if r.outcome == "quarantined":
        fail(f"#{item_id} stays in quarantine: {r.reason}")
    if r.outcome == "duplicate":
        click.echo(f"#{item_id} was already stored" + (f" ({name})" if name else "")
                   + ": marked released, nothing stored twice")
        return
    click.echo(f"#{item_id} released: {r.outcome}" + (f", {name}" if name else ""))
