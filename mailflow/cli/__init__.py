"""The ``mailflow`` command. Commands call into the modules; no logic lives here.

One module per command group; the helpers they share are in ``base``.
Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import logging

import click

from mailflow import config as config_mod
from mailflow import logsetup
from mailflow.cli.base import (
    EXIT_CONFIG,
    EXIT_RUNTIME,
    _iso,
    _open_db,
    _settings,
    fail,
    handles_errors,
)
from mailflow.cli.check import check
from mailflow.cli.db import db
from mailflow.cli.demo import demo
from mailflow.cli.desk import tickets_resolve as _desk  # noqa: F401 - registers the desk commands
from mailflow.cli.digest import digest
from mailflow.cli.escalate import tickets_escalate as _esc  # noqa: F401 - registers it
from mailflow.cli.export import COMMANDS as EXPORT_COMMANDS
from mailflow.cli.init import init
from mailflow.cli.outbox import outbox
from mailflow.cli.quarantine import quarantine
from mailflow.cli.refer import tickets_refer as _refer  # noqa: F401 - registers tickets refer
from mailflow.cli.rules import rules
from mailflow.cli.run import run
from mailflow.cli.sla import sla
from mailflow.cli.tickets import tickets

__all__ = ["EXIT_CONFIG", "EXIT_RUNTIME", "_iso", "_open_db", "_settings", "fail",
           "handles_errors", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", "config", envvar=config_mod.CONFIG_ENV,
              type=click.Path(dir_okay=False),
              help="Configuration file (default: $MAILFLOW_CONFIG or ./mailflow.yaml).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--log-format", type=click.Choice(logsetup.FORMATS), default="text",
              envvar="MAILFLOW_LOG_FORMAT", show_default=True,
              help="Log lines for people, or one JSON object per line.")
@click.version_option(package_name="mailflow")
@click.pass_context
def main(ctx: click.Context, config: str | None, verbose: int, log_format: str) -> None:
    """mailflow: an email-driven support mailbox processor."""
    ctx.ensure_object(dict).update(config=config, verbose=verbose)
    level = logging.WARNING - 10 * verbose
    logsetup.configure(max(level, logging.DEBUG), log_format)


for _command in (init, check, db, run, tickets, outbox, quarantine, rules, demo, sla, digest):
    main.add_command(_command)
for _command in EXPORT_COMMANDS:
    main.add_command(_command)
from mailflow.cli import status as _status  # noqa: E402, F401 - registers mailflow status
