"""``mailflow demo``: the main job on a private mail stack."""

from __future__ import annotations

import sys
from pathlib import Path

import click

# -- demo -------------------------------------------------------------------------------------

@click.command()
@click.option("--keep", is_flag=True, help="Leave the mail stack running afterwards.")
@click.argument("directory", default="demo", type=click.Path(file_okay=False))
def demo(directory: str, keep: bool) -> None:
    """Run the main job on a local mail stack with example customer mail."""
    from mailflow.demo import run_demo

    sys.exit(run_demo(Path(directory), keep=keep))
