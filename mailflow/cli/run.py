"""``mailflow run``: the daemon, or one cycle of it."""

from __future__ import annotations

import asyncio
import logging

import click

from mailflow.cli.base import _settings, fail, handles_errors

# -- run -----------------------------------------------------------------------------------

@click.command()
@click.option("--once", is_flag=True, help="One full cycle of every folder and the outbox.")
@click.pass_context
@handles_errors
def run(ctx: click.Context, once: bool) -> None:
    """Watch the mailbox, open and update tickets, send mail."""
    from mailflow.app import build
    from mailflow.daemon import run_once, serve
    from mailflow.imap import NETWORK_ERRORS

    settings = _settings(ctx)
    app = build(settings)
    try:
        if once:
            try:
                res = run_once(app)
            except NETWORK_ERRORS as exc:
                fail(f"IMAP {settings.imap.host}:{settings.imap.port}: {exc}")
            d = res.delivery
            click.echo(f"fetched {res.fetched} message(s): "
                       + (", ".join(f"{k} {v}" for k, v in sorted(res.outcomes.items()))
                          or "nothing new"))
            click.echo(f"outbox: sent {len(d.sent)}, retrying {len(d.retrying)}, "
                       f"failed {len(d.failed)}")
        else:
            if not logging.getLogger().isEnabledFor(logging.INFO):
                logging.getLogger().setLevel(logging.INFO)
            asyncio.run(serve(app))
    finally:
        app.close()
