"""Issue 10, item 8 against Dovecot and both databases: bounces in the formats that are
not RFC 3464 are recorded on the ticket they return, or quarantined, and never
acknowledged; every bounce sample of the corpus passes through ``run --once`` so."""

from __future__ import annotations

from sqlalchemy import func, select

from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.store.models import OutboxRow, Ticket, TicketEvent
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail
from tests.unit.test_bounces import CORPUS, _bounce_samples, qmail_bounce


def test_qmail_bounce_of_our_ack_is_recorded_on_its_ticket(stack: MailStack, db_url: str,
                                                           make_app) -> None:
    app = make_app(stack, db_url)
    stack.append(SUPPORT, [mail()])
    run_once(app)
    with app.sessions() as s:
        ours = s.scalars(select(OutboxRow.message_id)).one()
    stack.append(SUPPORT, [qmail_bounce(ours, rcpt=CUSTOMER)])
    res = run_once(app)
    assert res.outcomes["bounce"] == 1 and not res.delivery.sent
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1
        assert s.scalar(select(func.count()).select_from(OutboxRow)) == 1  # the first ack
        ev = s.scalars(select(TicketEvent).where(TicketEvent.kind == "delivery-failed")).one()
    assert ev.ticket_id == 1 and "5.1.1" in ev.summary


def test_no_corpus_bounce_is_acknowledged_or_opens_a_ticket(stack: MailStack, db_url: str,
                                                            make_app) -> None:
    samples = _bounce_samples()
    if not samples:
        import pytest

        pytest.skip(f"corpus not found at {CORPUS}")
    app = make_app(stack, db_url)
    stack.append(SUPPORT, [(CORPUS / p).read_bytes() for p in samples])
    res = run_once(app)
    assert res.fetched == len(samples)
    with app.sessions() as s:
        acks = s.scalar(select(func.count()).select_from(OutboxRow))
        tickets = s.scalar(select(func.count()).select_from(Ticket))
    assert acks == 0 and not res.delivery.sent
    # The two list-relayed bounces flufl.bounce cannot read become (silent) tickets at most.
    assert tickets <= 2, res.outcomes
