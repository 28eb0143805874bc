"""Engines, sessions and the schema version: the one place that opens the database."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Table,
    TypeDecorator,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.schema import ScalarElementColumnDefault

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaError(Exception):
    """The database is not at the schema this code needs."""


def json_text(doc: Any) -> str:
    """JSON columns are encoded by this (orjson: compact, UTF-8 as is). A scheduler tick
    writes ~5,000 documents (events' data, outbox contexts): 29 ms with the standard
    library's encoder, 4 ms here. Keys that are not strings (an int) become strings,
    as ``json.dumps`` makes them."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # What orjson refuses and the standard library writes: a lone surrogate from
        # a broken encoded-word (escaped as \udxxx), an int beyond 64 bits.
        return json.dumps(doc, check_circular=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    kwargs.setdefault("json_serializer", json_text)
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
    executemany wants one key set per statement, so rows are grouped by theirs, and go to
    the driver directly (``_direct``).
    """
    if not rows:
        return
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    conn = session.connection()
    table = model.__table__
    for keys, group in groups.items():
        if not _direct(conn, table, keys, group):
            conn.execute(table.insert(), group)


def insert_ignore(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """INSERT that leaves an existing row with the same key alone (suppressions: the
    first reason stays; two workers suppressing one address do not collide)."""
    if not rows:
        return
    conn = session.connection()
    table = model.__table__
    keys = tuple(rows[0])
    if all(tuple(r) == keys for r in rows) and _direct(conn, table, keys, rows,
                                                      " ON CONFLICT DO NOTHING"):
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), list(rows))


def _direct(conn: Connection, table: Table, keys: tuple[str, ...],
            rows: Sequence[dict[str, Any]], suffix: str = "") -> bool:
    """One executemany of plain tuples on the driver (sqlite3, psycopg), the values
    converted by the columns' own bind processors (the very functions SQLAlchemy would
    call) and each distinct timestamp converted once. SQLAlchemy's per-row parameter
    handling costs more than SQLite's insert itself for the scheduler's and ingest's
    many small rows. False (nothing done) where that would not be the same INSERT:
    another driver, or a column left out whose default is not a plain value."""
    plan = _insert_plan(conn.dialect, table, keys, suffix)
    if plan is None:
        return False
    sql, procs, extra = plan
    columns: list[Iterable[Any]] = []
    for key, (proc, kind) in zip(keys, procs, strict=True):
        values = list(map(itemgetter(key), rows))
        if proc is not None and kind == "timestamp":
            # Timestamps: most rows of a batch share a few ("now"), each converted once.
            converted = {v: proc(v) for v in set(values)}
            values = list(map(converted.__getitem__, values))
        elif proc is not None and kind == "json":
            values = _json_values(proc, values)
        elif proc is not None:
            values = list(map(proc, values))
        columns.append(values)
    columns += [repeat(v) for v in extra]
    values = list(zip(*columns, strict=False))  # repeat() is endless
    if not suffix and conn.dialect.name == "postgresql" and len(values) >= _COPY_FROM:
        _copy(conn, sql, values)
    else:
        conn.exec_driver_sql(sql, values)
    return True


# From this many rows a plain insert on PostgreSQL goes by COPY: one stream instead of a
# statement per row (psycopg pipelines those, but the server still parses and plans
# each: 20-40 us a row, most of a scheduler tick's time there).
_COPY_FROM = 50


def _copy(conn: Connection, insert_sql: str, values: list[tuple[Any, ...]]) -> None:
    """``COPY table (columns) FROM STDIN`` in the caller's transaction, the values as the
    INSERT would have had them (psycopg adapts both the same way)."""
    head = insert_sql.split(" VALUES ", 1)[0]  # INSERT INTO t (a, b)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy("COPY " + head.removeprefix("INSERT INTO ") + " FROM STDIN") as cp:
            for row in values:
                cp.write_row(row)
    finally:
        cursor.close()


def _json_values(proc: Any, values: list[Any]) -> list[Any]:
    """JSON documents encoded, an empty list or object once per batch: most rows carry
    one (an outbox row's ``references``, an event without data)."""
    empty: dict[type, Any] = {}
    out = []
    for v in values:
        if not v and (t := type(v)) in (list, dict):
            if t not in empty:
                empty[t] = proc(v)
            out.append(empty[t])
        else:
            out.append(proc(v))
    return out


# The drivers the direct path knows, with their placeholder for a positional value.
_MARKS = {("sqlite", "pysqlite"): "?", ("postgresql", "psycopg"): "%s"}


@functools.lru_cache(maxsize=256)
def _insert_plan(dialect: Dialect, table: Table, keys: tuple[str, ...], suffix: str
                 ) -> tuple[str, list[tuple[Any, str | None]], tuple[Any, ...]] | None:
    """The statement, each key's bind processor (and whether it converts timestamps or
    JSON), and the plain defaults of the columns the rows leave out (None: not a plain
    insert)."""
    mark = _MARKS.get((dialect.name, dialect.driver))
    if mark is None:
        return None
    procs = []
    for k in keys:
        col = table.c[k]
        kind = ("timestamp" if _timestamps(col)
                else "json" if isinstance(col.type, JSON) else None)
        procs.append((col.type.dialect_impl(dialect).bind_processor(dialect), kind))
    names = list(keys)
    extra = []
    for col in table.c:
        if col.key in keys:
            continue
        if col.server_default is not None:
            return None
        if col.default is None:
            continue  # NULL, or the next id
        if not isinstance(col.default, ScalarElementColumnDefault):
            return None  # a callable (default=list): SQLAlchemy calls it per row
        value = col.default.arg
        proc = col.type.dialect_impl(dialect).bind_processor(dialect)
        names.append(col.key)
        extra.append(proc(value) if proc is not None else value)
    prep = dialect.identifier_preparer
    cols = ", ".join(prep.quote(table.c[n].name) for n in names)
    marks = ", ".join(mark for _ in names)
    return (f"INSERT INTO {prep.format_table(table)} ({cols}) VALUES ({marks}){suffix}",
            procs, tuple(extra))


def _timestamps(col: Any) -> bool:
    """Does the column hold timestamps (directly, or under a TypeDecorator such as
    UTCDateTime, whose ``python_type`` says ``object``)?"""
    t = col.type
    return isinstance(t.impl if isinstance(t, TypeDecorator) else t, DateTime)


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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


_REVISION = re.compile(r'^revision\s*=\s*"([^"]+)"', re.M)
_DOWN = re.compile(r'^down_revision\s*=\s*"([^"]+)"', re.M)


@functools.cache
def _revisions() -> tuple[frozenset[str], str]:
    """Every revision this code knows, and the head, read from the migration files.

    The daemon checks the schema at every start; importing alembic for that (with mako
    and pygments) cost it about 11 MiB of resident memory for the rest of its life, so
    alembic is imported only to migrate."""
    known: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        if (rev := _REVISION.search(source)) is not None:
            known.add(rev.group(1))
        if (down := _DOWN.search(source)) is not None:
            parents.add(down.group(1))
    heads = known - parents
    if len(heads) != 1:
        raise SchemaError(f"mailflow's migrations have {len(heads)} heads: "
                          f"{', '.join(sorted(heads)) or 'none'} (a broken install)")
    return frozenset(known), heads.pop()


def head_revision() -> str:
    return _revisions()[1]


def current_revision(engine: Engine) -> str | None:
    """The schema's revision as alembic records it (``alembic_version``), or None for a
    database without a mailflow schema."""
    if not inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every pending migration; return (revision before, revision after)."""
    from alembic import command

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
    if current not in _revisions()[0]:
        raise SchemaError(
            f"the database schema ({current}) is newer than this mailflow knows: "
            "upgrade mailflow, or point it at another database"
        )
    raise SchemaError(
        f"the database schema is outdated ({current}, needs {head}): "
        "run `mailflow db upgrade`"
    )
