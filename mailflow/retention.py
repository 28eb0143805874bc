"""Retention: drop the raw bytes of long-closed tickets, keep everything else.

Raw mail is most of a mailflow database (attachments live inside it), and once a ticket
has been closed for months nobody needs the original bytes. Everything the digest,
reports and threading read stays: ticket rows, events, message rows with their headers,
Message-IDs, dedupe keys, extracted text and attachment metadata, outbox rows. Only
``messages.raw`` (NOT NULL: it becomes ``b''`` and the message gets the flag
``raw-purged``) and the stored bytes of mail already sent (``outbox.raw``: NULL) go.

Batches are short transactions so a running daemon is never held up for long, and the
ticket state is re-checked under a lock in each one: a customer reply that reopens a
ticket while retention runs keeps that ticket's mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    CursorResult,
    Table,
    and_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from mailflow.outbox import DROPPED, SENT
from mailflow.store.models import OutboxRow, StoredMessage, Ticket
from mailflow.tickets import Status

RAW_PURGED = "raw-purged"
BATCH = 200  # tickets per transaction


@dataclass
class PurgeReport:
    tickets: int = 0  # closed before the cutoff (examined)
    messages: int = 0  # messages whose raw bytes were removed now
    outbox: int = 0  # sent mail whose stored bytes were removed now
    bytes: int = 0  # raw bytes removed (SQLite reuses the space; VACUUM returns it)
    dry_run: bool = False


def _closed_before(cutoff: datetime,
                   ids: list[int] | None = None) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = [Ticket.status == str(Status.CLOSED),
                                       Ticket.closed_at.is_not(None), Ticket.closed_at < cutoff]
    if ids is not None:
        cond.append(Ticket.id.in_(ids))
    return cond


def _purge_batch(s: Session, ids: list[int], cutoff: datetime, report: PurgeReport) -> None:
    # PostgreSQL: lock the tickets, so ingest cannot reopen one until we commit.
    s.execute(select(Ticket.id).where(*_closed_before(cutoff, ids)).with_for_update())
    ob = cast(Table, OutboxRow.__table__)  # typed FromClause by DeclarativeBase
    sent = and_(ob.c.raw.is_not(None), ob.c.status.in_([SENT, DROPPED]),
                ob.c.ticket_id.in_(select(Ticket.id).where(*_closed_before(cutoff, ids))))
    report.bytes += s.scalar(select(func.coalesce(func.sum(func.length(ob.c.raw)), 0))
                             .where(sent)) or 0
    # A write statement first: on SQLite it takes the database's write lock, so the
    # re-check below cannot go stale before commit (PostgreSQL holds the row locks).
    done = cast(CursorResult[Any], s.execute(update(ob).where(sent).values(raw=None)))
    report.outbox += done.rowcount or 0
    confirmed = list(s.scalars(select(Ticket.id).where(*_closed_before(cutoff, ids))))
    if not confirmed:
        return
    mt = cast(Table, StoredMessage.__table__)
    rows = s.execute(select(mt.c.id, mt.c.flags, func.length(mt.c.raw))
                     .where(mt.c.ticket_id.in_(confirmed), func.length(mt.c.raw) > 0)).all()
    if not rows:
        return
    params = [{"b_id": r.id, "b_flags": [*(f for f in (r.flags or []) if f != RAW_PURGED),
                                         RAW_PURGED]} for r in rows]
    stmt = (update(mt).where(mt.c.id == bindparam("b_id"))
            .values(raw=b"", flags=bindparam("b_flags", type_=JSON)))
    s.connection().execute(stmt, params)
    report.messages += len(rows)
    report.bytes += sum(r[2] or 0 for r in rows)


def purge_raw(sessions: sessionmaker[Session], now: datetime, older_than_days: int,
              dry_run: bool = False, batch: int = BATCH) -> PurgeReport:
    """Remove raw bytes of tickets closed more than ``older_than_days`` days before
    ``now``. ``dry_run`` counts what would go and changes nothing."""
    if older_than_days < 0:
        raise ValueError(f"the number of days must be 0 or more (got {older_than_days})")
    cutoff = now - timedelta(days=older_than_days)
    report = PurgeReport(dry_run=dry_run)
    last = 0
    while True:
        with sessions() as s:
            ids = list(s.scalars(select(Ticket.id).where(*_closed_before(cutoff),
                                                         Ticket.id > last)
                                 .order_by(Ticket.id).limit(batch)))
        if not ids:
            return report
        report.tickets += len(ids)
        last = ids[-1]
        with sessions() as s:
            try:
                _purge_batch(s, ids, cutoff, report)
            except BaseException:
                s.rollback()
                raise
            if dry_run:
                s.rollback()
            else:
                s.commit()
