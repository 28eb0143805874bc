"""``mailflow run``: the daemon, or one cycle of it."""

from __future__ import annotations

import asyncio
import logging

import click

from mailflow.cli.base import _settings, fail, handles_errors, traceback_if_asked
from mailflow.config import CredentialError, Settings
from mailflow.explain import imap_problem
from mailflow.runlock import exclusive


@click.command()
@click.option("--once", is_flag=True, help="One full cycle of every folder and the outbox.")
@click.pass_context
@handles_errors
def run(ctx: click.Context, once: bool) -> None:
    """Watch the mailbox, open and update tickets, send mail.

    On SQLite only one process runs at a time (``--once`` included): a second one is
    refused at once, naming the one that runs.
    """
    from mailflow.memory import fewer_malloc_arenas

    fewer_malloc_arenas()  # before any thread starts (mailflow/memory.py says why)
    settings = _settings(ctx)
    with exclusive(settings.database_url):
        _run(settings, once)


def _run(settings: Settings, once: bool) -> None:
    from mailflow.app import build
    from mailflow.daemon import run_once, serve
    from mailflow.imap import NETWORK_ERRORS

    app = build(settings)
    try:
        if once:
            try:
                res = run_once(app)
            except (*NETWORK_ERRORS, CredentialError) as exc:
                traceback_if_asked()
                im = settings.imap
                fail(imap_problem(exc, im.host, im.port, im.security, im.username,
                                  im.timeout.total_seconds()))
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
