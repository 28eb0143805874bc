"""The sender's "sent" marks, written lean: the rows ``apply`` would write for them,
through the driver, without a Session. A mark is on the sending path of every mail."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Table, bindparam
from sqlalchemy.orm import Session

from mailflow.store.db import _direct as direct_insert  # insert_many without a Session
from mailflow.store.models import OutboxRow, TicketEvent
from mailflow.tickets import RESPONSE_KINDS
from mailflow.tickets.apply import ApplyContext, _Writer, apply
from mailflow.tickets.effects import MailSent

_O = cast(Table, OutboxRow.__table__)


def apply_marks(conn: Connection, sent: Sequence[MailSent], ctx: ApplyContext) -> None:
    """The sender's "sent" marks, on a bare connection in the caller's transaction.

    The same rows as ``apply`` (each outbox row marked, its ``mail-sent`` event; the
    rows are collected by the very code ``apply`` runs), written by two executemany
    statements on the driver without a Session: a mark is on the sending path of every
    mail, and ``apply``'s general machinery cost ~0.3 ms of CPU a mark (bench/RESULTS.md,
    end to end). A response (it stops a ticket's SLA clock, so it changes the ticket)
    goes through ``apply`` itself. tests/integration/test_outbox_marks.py compares both.
    """
    if any(e.ticket is not None and e.kind in RESPONSE_KINDS for e in sent):
        with Session(bind=conn) as s:
            apply(s, sent, ctx)
        return
    w = _Writer(None, ctx)  # type: ignore[arg-type]  # collects only: no Session needed
    for e in sent:
        w._collect(e)
    rows = w.outbox_updates
    if rows:
        keys = tuple(k for k in rows[0] if k != "oid")
        plan = _update_plan(conn.dialect, keys)
        if plan is None:
            conn.execute(_O.update().where(_O.c.id == bindparam("oid")).values(
                {k: bindparam(k) for k in keys}), rows)
        else:
            sql, procs = plan
            conn.exec_driver_sql(sql, [
                (*(p(r[k]) if p is not None else r[k] for k, p in zip(keys, procs, strict=True)),
                 r["oid"]) for r in rows])
    if w.events:
        table = cast(Table, TicketEvent.__table__)
        keys = tuple(w.events[0])
        if not direct_insert(conn, table, keys, w.events):
            conn.execute(table.insert(), w.events)


@functools.lru_cache(maxsize=8)
def _update_plan(dialect: Dialect, keys: tuple[str, ...]) -> tuple[str, list[Any]] | None:
    """``UPDATE outbox SET <keys> WHERE id = ?`` for the driver, with each column's bind
    processor (as SQLAlchemy would convert the values); None for a driver not known."""
    mark = {("sqlite", "pysqlite"): "?", ("postgresql", "psycopg"): "%s"}.get(
        (dialect.name, dialect.driver))
    if mark is None:
        return None
    prep = dialect.identifier_preparer
    sets = ", ".join(f"{prep.quote(_O.c[k].name)} = {mark}" for k in keys)
    procs = [_O.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in keys]
    return (f"UPDATE {prep.format_table(_O)} SET {sets} WHERE {prep.quote(_O.c.id.name)}"
            f" = {mark}", procs)
