"""Helpers every command module shares: exit codes, one-line failures, settings, database.

They live apart from ``__init__`` so that command modules can import them without
importing the command group that imports them.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

from mailflow import config as config_mod
from mailflow.classify import RulesError
from mailflow.config import ConfigError, Settings
from mailflow.explain import database_problem, file_problem
from mailflow.runlock import AlreadyRunning
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


def _root_obj() -> dict[str, Any]:
    """What ``main`` and ``_settings`` keep for the whole invocation."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, dict) else {}


def verbosity() -> int:
    """How many -v the user gave (0 outside a command)."""
    return int(_root_obj().get("verbose", 0))


def traceback_if_asked() -> None:
    """Operational failures are one line; with -vv the traceback follows, for a bug
    report or for finding which file the operating system refused."""
    if verbosity() >= 2:
        traceback.print_exc(file=sys.stderr)


def handles_errors(fn: F) -> F:
    """Known failures become one clear line and the documented exit code.

    Configuration and rule problems exit 2; a database that cannot be opened, a missing
    driver, an unreadable file exit 1. Anything else is a bug: still one line, with the
    way to get the traceback (-vv).
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            traceback_if_asked()
            for p in exc.problems:
                click.echo(f"mailflow: {p}", err=True)
            sys.exit(EXIT_CONFIG)
        except RulesError as exc:
            traceback_if_asked()
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            sys.exit(EXIT_CONFIG)
        except (SchemaError, AlreadyRunning) as exc:
            fail(str(exc))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            traceback_if_asked()
            fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - the point: no traceback at 3 a.m.
            traceback_if_asked()
            settings = _root_obj().get("settings")
            url = settings.database_url if settings is not None else ""
            line = database_problem(exc, url) or file_problem(exc)
            if line is None:
                line = (f"unexpected error: {type(exc).__name__}: {exc} (run with -vv for "
                        "the traceback, and please report it)")
            fail(line)

    return wrapper  # type: ignore[return-value]


def _open_db(ctx: click.Context) -> tuple[Settings, Any]:
    """Settings and a session factory on a database at the current schema, or one line
    saying why not (driver missing, database unreachable, schema outdated)."""
    settings = _settings(ctx)
    try:
        engine = make_engine(settings.database_url)
    except Exception as exc:  # noqa: BLE001 - a missing driver, a malformed URL
        traceback_if_asked()
        fail(database_problem(exc, settings.database_url) or f"database: {exc}")
    try:
        require_current(engine)
    except SchemaError as exc:
        engine.dispose()
        fail(str(exc))
    except Exception as exc:
        engine.dispose()
        line = database_problem(exc, settings.database_url)
        if line is None:
            raise
        traceback_if_asked()
        fail(line)
    return settings, session_factory(engine)


def _iso(d: Any) -> str | None:
    return d.isoformat() if d is not None else None


def ticket_arg(settings: Settings, text: str) -> int:
    """A ticket reference from the command line (``SUP-12``, ``BIL-12`` or ``12``), or
    one line saying what was expected."""
    from mailflow.accounts import expected_ref, parse_ticket

    tid = parse_ticket(settings, text)
    if tid is None:
        fail(f"not a ticket reference: {text!r} (expected {expected_ref(settings)})",
             EXIT_CONFIG)
    return tid


def ticket_name(settings: Settings, sessions: Any, tid: int) -> str:
    """``BIL-12``: the prefix of the desk the ticket belongs to."""
    from sqlalchemy import select

    from mailflow.accounts import ticket_ref
    from mailflow.store.models import Ticket

    if not settings.mailboxes:
        return ticket_ref(settings, tid, None)
    with sessions() as s:
        desk = s.execute(select(Ticket.desk).where(Ticket.id == tid)).scalar()
    return ticket_ref(settings, tid, desk)
