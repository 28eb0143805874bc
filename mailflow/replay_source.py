"""The stored history ``rules replay`` folds: each ticket's customer messages, in order.

Which messages count is what ingest decided when they arrived, read back from the
event trail rather than guessed again: the ticket's first incoming message opened and
classified it, and a later one re-classified it only if ingest recorded it as the
customer's (a ``customer-message`` event: not a staff reply, a rating, a bounce or a
copy of our own mail). Read in chunks of tickets, a few queries each, so a replay of a
year of tickets neither holds every raw message in memory nor runs a query per ticket.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.classify.replay import StoredMail
from mailflow.store.models import StoredMessage, Ticket, TicketEvent
from mailflow.tickets import EventKind

CHUNK = 200


@dataclass(frozen=True)
class StoredTicket:
    id: int
    subject: str
    severity: int
    category: str
    owner_group: str
    mails: tuple[StoredMail, ...]  # the customer's messages as ingest classified them
    desk: str | None = None  # the mailbox it came in by (None: the main one)


def count_since(session: Session, cutoff: datetime) -> int:
    return session.scalar(select(func.count(Ticket.id)).where(Ticket.created_at >= cutoff)) or 0


def tickets_since(session: Session, cutoff: datetime, chunk: int = CHUNK
                  ) -> Iterator[StoredTicket]:
    """Tickets opened at or after ``cutoff``, oldest first, each with its mails."""
    after = 0
    while True:
        rows = session.execute(
            select(Ticket.id, Ticket.subject, Ticket.severity, Ticket.category,
                   Ticket.owner_group, Ticket.desk)
            .where(Ticket.created_at >= cutoff, Ticket.id > after)
            .order_by(Ticket.id).limit(chunk)).all()
        if not rows:
            return
        mails = _customer_mails(session, [r.id for r in rows])
        for r in rows:
            yield StoredTicket(r.id, r.subject, r.severity, r.category, r.owner_group,
                               tuple(mails.get(r.id, ())), r.desk)
        after = rows[-1].id
        session.expunge_all()


def _customer_mails(session: Session, ids: list[int]) -> dict[int, list[StoredMail]]:
    # (message_id, at) of each message ingest recorded as the customer's on a ticket.
    joined: dict[int, set[str | None]] = defaultdict(set)
    joined_at: dict[int, set[datetime]] = defaultdict(set)
    for tid, at, data in session.execute(
            select(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.data)
            .where(TicketEvent.ticket_id.in_(ids),
                   TicketEvent.kind == str(EventKind.CUSTOMER_MESSAGE))):
        mid = (data or {}).get("message_id")
        if mid:
            joined[tid].add(mid)
        else:  # no Message-ID: the event carries the message's arrival time
            joined_at[tid].add(at)
    out: dict[int, list[StoredMail]] = defaultdict(list)
    for tid, mid, received, raw in session.execute(
            select(StoredMessage.ticket_id, StoredMessage.message_id,
                   StoredMessage.received_at, StoredMessage.raw)
            .where(StoredMessage.ticket_id.in_(ids), StoredMessage.direction == "in",
                   StoredMessage.disposition == "ticket")
            .order_by(StoredMessage.ticket_id, StoredMessage.id)):
        assert tid is not None  # selected by ticket id
        first = tid not in out
        if first or (mid in joined[tid] if mid else received in joined_at[tid]):
            out[tid].append(StoredMail(raw, received))
    return out
