"""Deliver queued mail: claim due rows, render once, send, record the server's answer.

Each row is claimed with a lease in its own committed transaction before any SMTP
traffic, and marked sent only after the server's 250. A sender that dies mid-way
leaves its rows ``sending`` until the lease runs out; they are then sent again with
the very same bytes and Message-ID. On PostgreSQL the claim uses ``FOR UPDATE SKIP
LOCKED`` so several workers never take the same row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker, undefer

from mailflow.clock import Clock
from mailflow.compose import Composer, Envelope, TemplateProblem
from mailflow.config import Settings
from mailflow.linking import reply_address
from mailflow.smtp import DeliveryError, SmtpTransport
from mailflow.store.db import transaction
from mailflow.store.models import OutboxRow, Suppression, TicketEvent
from mailflow.tickets import EventKind, event

log = logging.getLogger(__name__)

PENDING, SENDING, SENT, FAILED, DROPPED = "pending", "sending", "sent", "failed", "dropped"
# Mail to customers stops after a permanent failure; tier and staff mail is not ours
# to suppress that way.
_CUSTOMER_KINDS = {"acknowledgment", "status-update"}


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def backoff(attempts: int, initial: timedelta, cap: timedelta) -> timedelta:
    """Capped exponential back-off: initial, 2x, 4x, ... up to cap."""
    return min(cap, initial * (2 ** max(0, attempts - 1)))


def claim(sessions: sessionmaker[Session], now: datetime, lease: timedelta,
          limit: int = 100) -> list[int]:
    due = or_(
        and_(OutboxRow.status == PENDING, OutboxRow.next_attempt_at <= now),
        # A sender died holding these: its lease ran out.
        and_(OutboxRow.status == SENDING, OutboxRow.lease_until < now),
    )
    with transaction(sessions) as s:
        ids = list(s.scalars(
            select(OutboxRow.id).where(due).order_by(OutboxRow.id).limit(limit)
            .with_for_update(skip_locked=True)
        ))
        if ids:
            s.execute(update(OutboxRow).where(OutboxRow.id.in_(ids)).values(
                status=SENDING, lease_until=now + lease, attempts=OutboxRow.attempts + 1))
    return ids


def render(row: OutboxRow, composer: Composer, settings: Settings, now: datetime) -> bytes:
    ctx: dict[str, Any] = dict(row.context)
    reply_to = None
    if row.ticket_id is not None and row.reply_token:
        reply_to = reply_address(settings.support_address, row.ticket_id, row.reply_token)
    env = Envelope(
        mail_from=row.mail_from,
        from_name=settings.from_name,
        to=row.recipient,
        message_id=row.message_id,
        date=now,
        reply_to=reply_to,
        in_reply_to=row.in_reply_to,
        references=tuple(r for r in row.references or () if r),
        auto_submitted=row.auto_submitted or "auto-replied",
        extra_headers=(("X-Mailflow-Ticket", ctx.get("ticket", {}).get("ref", "")),)
        if row.ticket_id is not None else (),
    )
    return composer.build(row.template, ctx, env).as_bytes()


class OutboxSender:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], composer: Composer,
                 clock: Clock, transport: Callable[[], SmtpTransport] | None = None):
        self.settings = settings
        self.sessions = sessions
        self.composer = composer
        self.clock = clock
        self.transport = transport or (lambda: SmtpTransport(settings.smtp))

    async def deliver_due(self, limit: int = 100) -> DeliveryReport:
        """One pass: every row due now, over one SMTP connection."""
        report = DeliveryReport()
        st = self.settings.outbox
        while True:
            ids = claim(self.sessions, self.clock.now(), st.lease, limit)
            if not ids:
                return report
            rows = self._prepare(ids, report)
            if rows:
                await self._send_all(rows, report)
            if len(ids) < limit:
                return report

    def _prepare(self, ids: list[int], report: DeliveryReport) -> list[OutboxRow]:
        """Render rows that have no bytes yet, and persist them before any sending."""
        now = self.clock.now()
        ready = []
        with transaction(self.sessions) as s:
            rows = s.scalars(select(OutboxRow).where(OutboxRow.id.in_(ids))
                             .options(undefer(OutboxRow.raw)).order_by(OutboxRow.id)).all()
            suppressed = dict(s.execute(select(Suppression.address, Suppression.reason)
                                        .where(Suppression.address.in_(
                                            {r.recipient for r in rows}))).all())
            for row in rows:
                if row.kind in _CUSTOMER_KINDS and row.recipient in suppressed:
                    self._fail(s, row, f"not sent: {row.recipient} is suppressed "
                                       f"({suppressed[row.recipient]})", now, suppress=False)
                    report.failed.append(row.id)
                    continue
                if row.raw is None:
                    try:
                        row.raw = render(row, self.composer, self.settings, now)
                    except TemplateProblem as exc:
                        # A template error is the administrator's to fix: the row waits
                        # (retrying with back-off) instead of sending a broken mail.
                        self._retry(s, row, f"template error: {exc}", now)
                        report.retrying.append(row.id)
                        log.error("outbox %s: template error: %s", row.id, exc)
                        continue
                ready.append(row)
        return ready

    async def _send_all(self, rows: list[OutboxRow], report: DeliveryReport) -> None:
        try:
            async with self.transport() as smtp:
                for row in rows:
                    assert row.raw is not None
                    try:
                        answer = await smtp.send(row.mail_from, row.recipient, row.raw)
                    except DeliveryError as exc:
                        self._record_failure(row, exc, report)
                        if not exc.permanent and "connection" in str(exc).lower():
                            # The connection is gone: the rest wait for the next pass.
                            for rest in rows[rows.index(row) + 1:]:
                                self._record_failure(rest, exc, report)
                            return
                        continue
                    self._record_sent(row, answer, report)
        except DeliveryError as exc:  # could not connect at all
            log.warning("SMTP unavailable, %d mail(s) wait: %s", len(rows), exc)
            for row in rows:
                if row.id not in report.sent and row.id not in report.failed \
                        and row.id not in report.retrying:
                    self._record_failure(row, exc, report)

    def _record_sent(self, row: OutboxRow, answer: str, report: DeliveryReport) -> None:
        now = self.clock.now()
        with transaction(self.sessions) as s:
            s.execute(update(OutboxRow).where(OutboxRow.id == row.id).values(
                status=SENT, sent_at=now, lease_until=None, last_error=None))
            if row.ticket_id is not None:
                s.add(TicketEvent(**event(row.ticket_id, EventKind.MAIL_SENT, now,
                                          summary=f"{row.kind} to {row.recipient}",
                                          outbox_id=row.id, message_id=row.message_id,
                                          server_answer=answer[:200])))
        report.sent.append(row.id)
        log.info("sent outbox %s (%s) to %s", row.id, row.kind, row.recipient)

    def _record_failure(self, row: OutboxRow, exc: DeliveryError, report: DeliveryReport) -> None:
        now = self.clock.now()
        with transaction(self.sessions) as s:
            fresh = s.get(OutboxRow, row.id)
            assert fresh is not None
            if exc.permanent or fresh.attempts >= self.settings.outbox.max_attempts:
                why = str(exc) if exc.permanent else \
                    f"gave up after {fresh.attempts} attempts: {exc}"
                self._fail(s, fresh, why, now, suppress=exc.permanent)
                report.failed.append(row.id)
                log.error("outbox %s to %s failed: %s", row.id, row.recipient, why)
            else:
                self._retry(s, fresh, str(exc), now)
                report.retrying.append(row.id)
                log.warning("outbox %s to %s will be retried at %s: %s", row.id,
                            row.recipient, fresh.next_attempt_at, exc)

    def _retry(self, s: Session, row: OutboxRow, why: str, now: datetime) -> None:
        st = self.settings.outbox
        row.status = PENDING
        row.lease_until = None
        row.last_error = why[:2000]
        row.next_attempt_at = now + backoff(row.attempts, st.retry_initial, st.retry_max)

    def _fail(self, s: Session, row: OutboxRow, why: str, now: datetime, suppress: bool) -> None:
        row.status = FAILED
        row.lease_until = None
        row.last_error = why[:2000]
        if suppress and row.kind in _CUSTOMER_KINDS and s.get(Suppression, row.recipient) is None:
            s.add(Suppression(address=row.recipient, reason=why[:2000], created_at=now))
        if row.ticket_id is not None:
            s.add(TicketEvent(**event(row.ticket_id, EventKind.DELIVERY_FAILED, now,
                                      summary=f"{row.kind} to {row.recipient}: {why}",
                                      outbox_id=row.id, recipient=row.recipient)))


# -- administrator operations (mailflow outbox ...) ---------------------------------------

def retry(sessions: sessionmaker[Session], row_id: int, now: datetime) -> OutboxRow | None:
    """Send a failed or waiting row again now; lifts the recipient's suppression."""
    with transaction(sessions) as s:
        row = s.get(OutboxRow, row_id)
        if row is None:
            return None
        if row.status == SENT:
            raise ValueError(f"outbox {row_id} was already sent at {row.sent_at}; "
                             "not sending it twice")
        row.status, row.next_attempt_at, row.lease_until = PENDING, now, None
        row.attempts = 0
        sup = s.get(Suppression, row.recipient)
        if sup is not None:
            s.delete(sup)
        return row


def drop(sessions: sessionmaker[Session], row_id: int) -> OutboxRow | None:
    with transaction(sessions) as s:
        row = s.get(OutboxRow, row_id)
        if row is None:
            return None
        if row.status == SENT:
            raise ValueError(f"outbox {row_id} was already sent; nothing to drop")
        row.status = DROPPED
        row.lease_until = None
        return row
