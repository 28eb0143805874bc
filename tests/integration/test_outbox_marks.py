"""The sender's lean "sent" marks (``apply_marks``) write what ``apply`` writes.

Two identical databases' worth of rows (in one database: two sets of tickets and
outbox rows); one set marked through ``apply`` in an ORM session as before, the other
through ``apply_marks`` on a bare connection; the rows must agree column by column.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from mailflow.store.db import make_engine, session_factory, transaction, upgrade
from mailflow.store.models import OutboxRow, Ticket, TicketEvent
from mailflow.tickets.apply import ApplyContext, apply
from mailflow.tickets.effects import MailSent
from mailflow.tickets.marks import apply_marks

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 12, 5, 0, 123456, tzinfo=UTC)
CTX = ApplyContext(NOW, "support@example.test", "example.test", "SUP")
# acknowledgment and referral: the lean path; status-update is a response (it touches
# the ticket) and goes through apply; None: mail that belongs to no ticket (a digest).
KINDS = ("acknowledgment", "referral", "relay", "status-update", "acknowledgment")


def _seed(sessions: Any, tag: str) -> list[MailSent]:
    out = []
    with transaction(sessions) as s:
        for i, kind in enumerate(KINDS):
            t = Ticket(subject=f"s{i}", requester=f"c{i}@customers.test", status="open",
                       severity=3, category="general", reply_token=f"{tag}{i}",
                       created_at=T0, updated_at=T0, next_due_at=T0 + timedelta(hours=1))
            s.add(t)
            s.flush()
            ticket = None if i == len(KINDS) - 1 else t.id
            row = OutboxRow(ticket_id=ticket, kind=kind, mail_from="support@example.test",
                            recipient=f"c{i}@customers.test",
                            message_id=f"mf.{tag}.{i}@example.test", template=kind,
                            context={}, status="sending", attempts=1, next_attempt_at=T0,
                            lease_until=T0 + timedelta(minutes=5), created_at=T0,
                            last_error="451 try later")
            s.add(row)
            s.flush()
            out.append(MailSent(row.id, ticket, kind, row.recipient, row.message_id,
                                f"250 2.0.0 OK queued as {i} " + "x" * 300))
    return out


def _state(sessions: Any, sent: list[MailSent]) -> list[Any]:
    """Every column but ids and the per-set tags, per row, in order."""
    with sessions() as s:
        rows: list[Any] = []
        for m in sent:
            o = s.get(OutboxRow, m.outbox_id)
            rows.append((o.status, o.sent_at, o.lease_until, o.last_error, o.attempts))
            if m.ticket is not None:
                t = s.get(Ticket, m.ticket)
                rows.append((t.updated_at, t.next_due_at, t.first_response_at))
            evs = s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == m.ticket)
                            .order_by(TicketEvent.id)).all() if m.ticket is not None else []
            rows.append([(e.kind, e.at, e.actor, e.summary,
                          {**e.data, "outbox_id": "-", "message_id": "-"}) for e in evs])
        return rows


def test_apply_marks_writes_what_apply_writes(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    sessions = session_factory(engine)
    try:
        old = _seed(sessions, "a")
        new = _seed(sessions, "b")
        lean = [m for m in new if m.kind != "status-update"]
        with transaction(sessions) as s:
            apply(s, old, CTX)
        # A batch of lean marks, and one with a response in it (through apply).
        with engine.begin() as conn:
            apply_marks(conn, lean, CTX)
        with engine.begin() as conn:
            apply_marks(conn, [m for m in new if m.kind == "status-update"], CTX)
        expected, got = _state(sessions, old), _state(sessions, new)
        assert got == expected
        assert expected[0][0] == "sent" and expected[1][-1] is None  # really marked
        with sessions() as s:
            data = s.scalar(select(TicketEvent.data).where(TicketEvent.kind == "mail-sent")
                            .order_by(TicketEvent.id).limit(1))
            assert data is not None and data["outbox_id"] == old[0].outbox_id
    finally:
        engine.dispose()
