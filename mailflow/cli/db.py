"""``mailflow db``: the database schema."""

from __future__ import annotations

import click

from mailflow.cli.base import _settings, fail, handles_errors
from mailflow.explain import database_problem, is_connect_error
from mailflow.runlock import AlreadyRunning, exclusive
from mailflow.store.db import make_engine, upgrade

# -- db ------------------------------------------------------------------------------------

@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
@handles_errors
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations (on SQLite, not while mailflow runs on it)."""
    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    try:
        # A daemon would go on with the old code against the new schema.
        with exclusive(settings.database_url):
            before, after = upgrade(engine)
    except AlreadyRunning:
        raise
    except Exception as exc:  # noqa: BLE001 - report, do not dump a traceback at 3 a.m.
        # Cannot connect at all (no such database, login refused): say that, not
        # "migration failed" with SQLAlchemy's three-line message.
        if is_connect_error(exc):
            fail(database_problem(exc, settings.database_url) or str(exc))
        fail(f"migration failed: {str(getattr(exc, 'orig', None) or exc).strip()}")
    finally:
        engine.dispose()
    click.echo(f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})"))
