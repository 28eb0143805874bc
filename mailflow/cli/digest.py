"""``mailflow digest``: the daily digest for management, printed or sent.

Only calls into :mod:`mailflow.digest`; what the numbers mean is in docs/digest.md.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import click

from mailflow.cli.base import EXIT_CONFIG, _open_db, fail, handles_errors
from mailflow.config import Settings


@click.command("digest")
@click.option("--date", "day", default=None, metavar="YYYY-MM-DD",
              help="The day to report (default: yesterday, in the configured timezone).")
@click.option("--print", "mode", flag_value="print", default=True,
              help="Print the digest (the default).")
@click.option("--send", "mode", flag_value="send",
              help="Queue it to digest.recipients (once per day and recipient) and "
                   "deliver the outbox once.")
@click.option("--format", "fmt", type=click.Choice(["text", "html"]), default="text",
              show_default=True, help="What --print shows: the plain-text or the HTML part.")
@click.pass_context
@handles_errors
def digest(ctx: click.Context, day: str | None, mode: str, fmt: str) -> None:
    """How support did on a day, against the 7 and 30 days before it."""
    from mailflow.clock import SystemClock
    from mailflow.compose import Composer
    from mailflow.digest.send import TEMPLATE, digest_context, queue_digest

    settings, sessions = _open_db(ctx)
    now = SystemClock().now()
    try:
        when = (date.fromisoformat(day) if day
                else now.astimezone(settings.tz).date() - timedelta(days=1))
    except ValueError:
        fail(f"--date: expected YYYY-MM-DD (got {day!r})", EXIT_CONFIG)
    if mode == "print":
        subject, text, html = Composer(settings.templates_path).render(
            TEMPLATE, digest_context(sessions, settings, when, now))
        click.echo(html if fmt == "html" else f"Subject: {subject}\n\n{text}", nl=False)
        return
    if not settings.digest.recipients:
        fail("digest.recipients is empty: nobody to send the digest to "
             "(see docs/configuration.md)", EXIT_CONFIG)
    queued = queue_digest(sessions, settings, when, now)
    had = len(set(settings.digest.recipients)) - queued
    click.echo(f"digest {when.isoformat()}: queued {queued}"
               + (f", {had} recipient(s) had it already" if had else ""))
    _deliver(settings)


def _deliver(settings: Settings) -> None:
    """One pass of the outbox, as ``run --once`` sends; a running daemon (which holds
    the SQLite run lock) sends it instead."""
    from mailflow.app import build
    from mailflow.runlock import AlreadyRunning, exclusive

    try:
        with exclusive(settings.database_url):
            app = build(settings)
            try:
                d = asyncio.run(app.sender.deliver_due())
            finally:
                app.close()
    except AlreadyRunning:
        click.echo("outbox: the running daemon sends it")
        return
    click.echo(f"outbox: sent {len(d.sent)}, retrying {len(d.retrying)}, "
               f"failed {len(d.failed)}")
