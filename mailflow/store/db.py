"""Engines, sessions and the schema version: the one place that opens the database."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaError(Exception):
    """The database is not at the schema this code needs."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the CLI read while the daemon writes. FULL syncs the WAL at every commit:
    # mail is marked processed on the server right after a commit, so a commit must
    # survive a power cut (NORMAL may lose the last ones). Ingest commits once per batch,
    # so the sync costs nothing measurable (bench/RESULTS.md). Foreign keys are off by
    # default in SQLite and we rely on them.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def insert_many(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Bulk INSERT through Core, in the session's transaction.

    The ORM's bulk path costs two to three times as much per row (measured on ingest:
    16 vs 7 us per event row) for bookkeeping these append-only rows never need. Core
    executemany wants one key set per statement, so rows are grouped by theirs.
    """
    if not rows:
        return
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    conn = session.connection()
    table = model.__table__
    for group in groups.values():
        conn.execute(table.insert(), group)


def insert_ignore(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """INSERT that leaves an existing row with the same key alone (suppressions: the
    first reason stays; two workers suppressing one address do not collide)."""
    if not rows:
        return
    conn = session.connection()
    table = model.__table__
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), list(rows))


def chunks(items: Sequence[Any], n: int = 500) -> Iterable[Sequence[Any]]:
    """Slices for ``IN (...)`` lists: SQLite allows at most a few thousand parameters."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config(create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every pending migration; return (revision before, revision after)."""
    before = current_revision(engine)
    command.upgrade(alembic_config(engine), "head")
    return before, head_revision()


def require_current(engine: Engine) -> None:
    """Refuse to work on a schema that is not the one this code was written for."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaError(
            "the database has no mailflow schema yet: run `mailflow db upgrade` first"
        )
    script = ScriptDirectory.from_config(alembic_config(engine))
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database schema ({current}) is newer than this mailflow knows: "
            "upgrade mailflow, or point it at another database"
        )
    raise SchemaError(
        f"the database schema is outdated ({current}, needs {head}): "
        "run `mailflow db upgrade`"
    )
