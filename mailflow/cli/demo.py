"""``mailflow demo``: the main job on a private mail stack."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailflow.cli.base import handles_errors


@click.command()
@click.option("--keep", is_flag=True,
              help="Leave the mail stack (Dovecot and SMTP) running afterwards.")
@click.option("--stop", "stop", is_flag=True,
              help="Stop the mail stack a `demo --keep` left running in DIRECTORY.")
@click.argument("directory", default="demo", type=click.Path(file_okay=False))
@handles_errors
def demo(directory: str, keep: bool, stop: bool) -> None:
    """Run the main job on a local mail stack with example customer mail."""
    from mailflow.demo import run_demo, stop_demo

    if keep and stop:
        raise click.UsageError("--keep and --stop exclude each other")
    sys.exit(stop_demo(Path(directory)) if stop else run_demo(Path(directory), keep=keep))
