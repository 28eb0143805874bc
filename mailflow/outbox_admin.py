"""Administrator operations on one outbox row (``mailflow outbox retry|drop``): through
the one writer, like everything that changes a row; the sender never calls these."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailflow.outbox import SENT
from mailflow.store.db import transaction
from mailflow.store.models import OutboxRow
from mailflow.tickets.apply import ApplyContext, apply
from mailflow.tickets.effects import LiftSuppression, MailDropped, MailRetry


def retry(sessions: sessionmaker[Session], row_id: int, now: datetime,
          ctx: ApplyContext, actor: str) -> OutboxRow | None:
    """Send a failed or waiting row again now; lifts the recipient's suppression."""
    with transaction(sessions) as s:
        row = s.get(OutboxRow, row_id)
        if row is None:
            return None
        if row.status == SENT:
            raise ValueError(f"outbox {row_id} was already sent at {row.sent_at}; "
                             "not sending it twice")
        apply(s, [MailRetry(row.id, f"retry asked by {actor}", now, row.ticket_id, fresh=True),
                  LiftSuppression(row.recipient, actor)],
              ctx)
        s.refresh(row)
        return row


def drop(sessions: sessionmaker[Session], row_id: int, now: datetime,
         ctx: ApplyContext, actor: str) -> OutboxRow | None:
    with transaction(sessions) as s:
        row = s.get(OutboxRow, row_id)
        if row is None:
            return None
        if row.status == SENT:
            raise ValueError(f"outbox {row_id} was already sent; nothing to drop")
        apply(s, [MailDropped(row.id, row.ticket_id, f"dropped by {actor}", actor)], ctx)
        s.refresh(row)
        return row
