"""``mailflow export`` and ``mailflow retention``: backups people can read, and pruning.

Both only call into :mod:`mailflow.export` and :mod:`mailflow.retention`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailflow.accounts import desk_prefixes
from mailflow.cli.base import EXIT_CONFIG, _open_db, fail, handles_errors


@click.command("export")
@click.option("--since", default=None, metavar="DATE",
              help="Tickets created or changed since: 2026-01-31, 2026-01-31T08:00 or 30d "
                   "(default: all).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "mbox"]), default="jsonl",
              show_default=True, help="JSON lines (one ticket per line) or one mbox per ticket.")
@click.option("--output", "-o", "output", type=click.Path(), default=None,
              help="jsonl: file (default: standard output); mbox: directory (required).")
@click.option("--no-raw", is_flag=True,
              help="jsonl: leave out the raw mail (base64), keep only the stored fields.")
@click.pass_context
@handles_errors
def export(ctx: click.Context, since: str | None, fmt: str, output: str | None,
           no_raw: bool) -> None:
    """Export tickets with their messages, events and the mail sent."""
    from mailflow import export as ex
    from mailflow.clock import SystemClock

    settings, sessions = _open_db(ctx)
    try:
        cutoff = (ex.EVERYTHING if since is None
                  else ex.parse_since(since, SystemClock().now(), settings.tz))
    except ValueError as exc:
        fail(f"--since: {exc}", EXIT_CONFIG)
    if fmt == "mbox":
        if output is None:
            fail("--format mbox needs --output DIRECTORY", EXIT_CONFIG)
        report = ex.export_mbox(sessions, Path(output), cutoff, desk_prefixes(settings))
        where = f"{len(report.files)} mbox file(s) in {output}"
    elif output is None or output == "-":
        report = ex.export_jsonl(sessions, sys.stdout, cutoff, desk_prefixes(settings),
                                 raw=not no_raw)
        where = "standard output"
    else:
        path = Path(output)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            report = ex.export_jsonl(sessions, f, cutoff, desk_prefixes(settings),
                                     raw=not no_raw)
        tmp.replace(path)  # a backup file is complete or absent, never half written
        where = str(path)
    click.echo(f"exported {report.tickets} ticket(s), {report.messages} message(s), "
               f"{report.sent} mail sent to {where}"
               + (f"; {report.purged} message(s) without raw bytes (retention)"
                  if report.purged else ""), err=True)


@click.group()
def retention() -> None:
    """Remove what is no longer needed."""


@retention.command("purge")
@click.option("--raw-older-than", "days", type=click.IntRange(min=0), required=True,
              metavar="DAYS",
              help="Remove raw mail of tickets closed more than DAYS days ago.")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@click.pass_context
@handles_errors
def retention_purge(ctx: click.Context, days: int, dry_run: bool) -> None:
    """Delete raw mail bytes of long-closed tickets; keep tickets, texts and events."""
    from mailflow.clock import SystemClock
    from mailflow.retention import purge_raw

    _, sessions = _open_db(ctx)
    r = purge_raw(sessions, SystemClock().now(), days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{r.tickets} ticket(s) closed more than {days} day(s) ago: {verb} the raw "
               f"bytes of {r.messages} message(s) and {r.outbox} sent mail "
               f"({r.bytes} bytes)")


COMMANDS = (export, retention)
