"""Outbox delivery against the real SMTP server: waits, retries, exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from mailflow.clock import FrozenClock
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.outbox import claim
from mailflow.store.models import OutboxRow, Suppression, TicketEvent
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail


def _rows(app):  # type: ignore[no-untyped-def]
    with app.sessions() as s:
        return s.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()


def test_smtp_down_mail_waits_then_is_delivered_exactly_once(stack: MailStack, db_url: str,
                                                             make_app) -> None:
    clock = FrozenClock()
    app = make_app(stack, db_url, clock)
    stack.stop_smtp()
    stack.append(SUPPORT, [mail()])
    res = run_once(app)
    assert res.outcomes["new"] == 1
    assert res.delivery.retrying and not res.delivery.sent
    [row] = _rows(app)
    assert row.status == "pending" and row.attempts == 1 and "connect" in row.last_error
    assert row.next_attempt_at > clock.now()

    stack.start_smtp()
    # Not due yet: nothing is sent before the back-off runs out.
    assert asyncio.run(app.sender.deliver_due()).sent == []
    clock.advance(timedelta(minutes=5))
    assert asyncio.run(app.sender.deliver_due()).sent == [row.id]
    assert asyncio.run(app.sender.deliver_due()).sent == []
    assert len(stack.wait_for(CUSTOMER, 1)) == 1
    [row] = _rows(app)
    assert row.status == "sent" and row.attempts == 2


def test_4xx_answer_is_retried(stack: MailStack, sqlite_url: str, make_app) -> None:
    clock = FrozenClock()
    app = make_app(stack, sqlite_url, clock)
    assert stack.relay is not None
    stack.relay.fail_with = "451 4.3.0 try again later"
    stack.append(SUPPORT, [mail()])
    assert run_once(app).delivery.retrying
    [row] = _rows(app)
    assert row.status == "pending" and row.last_error.startswith("451")
    stack.relay.fail_with = None
    clock.advance(timedelta(hours=2))
    assert asyncio.run(app.sender.deliver_due()).sent == [row.id]
    assert len(stack.wait_for(CUSTOMER, 1)) == 1


def test_5xx_recipient_is_recorded_and_not_retried(stack: MailStack, db_url: str,
                                                   make_app) -> None:
    clock = FrozenClock()
    app = make_app(stack, db_url, clock)
    # A customer whose server refuses the address permanently (no such IMAP user).
    stack.append(SUPPORT, [mail(sender="Gone <gone@example.test>")])
    res = run_once(app)
    assert res.delivery.failed
    [row] = _rows(app)
    assert row.status == "failed" and row.last_error.startswith("550")
    clock.advance(timedelta(days=1))
    assert asyncio.run(app.sender.deliver_due()).failed == []
    with app.sessions() as s:
        assert s.get(Suppression, "gone@example.test") is not None
        kinds = s.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == 1)).all()
    assert "delivery-failed" in kinds
    # Further mail to the suppressed address is not even tried.
    stack.append(SUPPORT, [mail(sender="Gone <gone@example.test>", subject="again")])
    res = run_once(app)
    assert res.outcomes["new"] == 1 and not res.delivery.sent and not res.delivery.failed


def test_sender_crash_after_claim_resends_once_after_lease(stack: MailStack, sqlite_url: str,
                                                          make_app) -> None:
    clock = FrozenClock()
    app = make_app(stack, sqlite_url, clock)
    stack.append(SUPPORT, [mail()])
    app.watchers()[0].cycle()
    # A sender claims the row and dies before talking SMTP.
    assert claim(app.sessions, clock.now(), app.settings.outbox.lease) == [1]
    assert asyncio.run(app.sender.deliver_due()).sent == []  # leased to the dead sender
    clock.advance(app.settings.outbox.lease + timedelta(seconds=1))
    assert asyncio.run(app.sender.deliver_due()).sent == [1]
    assert asyncio.run(app.sender.deliver_due()).sent == []
    assert len(stack.wait_for(CUSTOMER, 1)) == 1


def test_claims_take_the_mail_due_longest_first_and_expired_leases(
        stack: MailStack, db_url: str, make_app) -> None:
    """Each claim reads the due index in order (no sort of the whole backlog): rows due
    longest first, ties by id, and rows of a dead sender whose lease ran out."""
    from sqlalchemy import update

    clock = FrozenClock()
    app = make_app(stack, db_url, clock)
    stack.append(SUPPORT, [mail(sender=f"C{i} <c{i}@example.test>", subject=f"m{i}")
                           for i in range(5)])
    app.watchers()[0].cycle()
    now = clock.now()
    with app.sessions.begin() as s:  # row 4 has waited longest; row 2 was being sent
        s.execute(update(OutboxRow).where(OutboxRow.id == 4)
                  .values(next_attempt_at=now - timedelta(hours=1)))
        s.execute(update(OutboxRow).where(OutboxRow.id == 5)
                  .values(next_attempt_at=now + timedelta(hours=1)))
        s.execute(update(OutboxRow).where(OutboxRow.id == 2)
                  .values(status="sending", lease_until=now - timedelta(seconds=1)))
    lease = app.settings.outbox.lease
    assert claim(app.sessions, now, lease, limit=2) == [2, 4]
    assert claim(app.sessions, now, lease, limit=2) == [1, 3]
    assert claim(app.sessions, now, lease, limit=2) == []  # row 5 is not due yet
