"""Helpers every command module shares: exit codes, one-line failures, settings, database.

They live apart from ``__init__`` so that command modules can import them without
importing the command group that imports them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

from mailflow import config as config_mod
from mailflow.classify import RulesError
from mailflow.config import ConfigError, Settings
from mailflow.store.db import SchemaError, make_engine, require_current, session_factory

log = logging.getLogger("mailflow")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_RUNTIME = 1
EXIT_CONFIG = 2


def fail(message: str, code: int = EXIT_RUNTIME) -> NoReturn:
    click.echo(f"mailflow: {message}", err=True)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        path = config_mod.config_path(obj.get("config"))
        try:
            obj["settings"] = config_mod.load(path)
        except ConfigError as exc:
            for p in exc.problems:
                click.echo(p, err=True)
            sys.exit(EXIT_CONFIG)
    settings: Settings = obj["settings"]
    return settings


def handles_errors(fn: F) -> F:
    """Known failures become one clear line and the documented exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            for p in exc.problems:
                click.echo(f"mailflow: {p}", err=True)
            sys.exit(EXIT_CONFIG)
        except RulesError as exc:
            for p in exc.problems:
                click.echo(str(p), err=True)
            sys.exit(EXIT_CONFIG)
        except SchemaError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def _open_db(ctx: click.Context) -> tuple[Settings, Any]:
    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    try:
        require_current(engine)
    except SchemaError as exc:
        engine.dispose()
        fail(str(exc))
    return settings, session_factory(engine)


def _iso(d: Any) -> str | None:
    return d.isoformat() if d is not None else None
