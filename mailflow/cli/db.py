"""``mailflow db``: the database schema."""

from __future__ import annotations

import click

from mailflow.cli.base import _settings, fail, handles_errors
from mailflow.explain import database_problem, is_connect_error
from mailflow.store.db import make_engine, upgrade

# -- db ------------------------------------------------------------------------------------

@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
@handles_errors
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations."""
    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    try:
        before, after = upgrade(engine)
    except Exception as exc:  # noqa: BLE001 - report, do not dump a traceback at 3 a.m.
        # Cannot connect at all (no such database, login refused): say that, not
        # "migration failed" with SQLAlchemy's three-line message.
        if is_connect_error(exc):
            fail(database_problem(exc, settings.database_url) or str(exc))
        fail(f"migration failed: {str(getattr(exc, 'orig', None) or exc).strip()}")
    finally:
        engine.dispose()
    click.echo(f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})"))
