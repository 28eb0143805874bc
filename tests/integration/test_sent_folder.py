"""Staff answering from their own mail client: the Sent folder's copy is a response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes

from sqlalchemy import func, select

from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.store.models import OutboxRow, StoredMessage, Ticket, TicketClock, TicketEvent
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail, reply_to


def test_an_answer_in_the_sent_folder_is_a_response_and_sends_nothing(
        stack: MailStack, db_url: str, make_app) -> None:
    app = make_app(stack, db_url, imap={"extra_folders": [{"folder": "Sent",
                                                           "role": "sent"}]})
    request = mail(subject="Printer broken", sender=CUSTOMER)
    stack.append(SUPPORT, [request])
    with stack.imap(SUPPORT) as c:
        c.create_folder("Sent")
    run_once(app)
    ack = stack.wait_for(CUSTOMER, 1)[0]
    # Ann answers from Outlook on the shared mailbox: a reply to the customer's mail,
    # and, in the same folder, a mail to someone about something else.
    answer = reply_to(request, f"Support <{SUPPORT}>", "Please restart it.", to=CUSTOMER)
    unrelated = mail(sender=SUPPORT, to="someone@elsewhere.test", subject="Lunch?")
    stack.append(SUPPORT, [answer, unrelated], folder="Sent")
    res = run_once(app)
    assert res.outcomes["staff-answer"] == 1 and res.outcomes["sent-unlinked"] == 1
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None and t.first_response_at is not None
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1  # nothing opened
        [ev] = s.scalars(select(TicketEvent).where(TicketEvent.kind == "staff-answer")).all()
        assert ev.actor == SUPPORT
        stored = {m.disposition: m for m in s.scalars(select(StoredMessage))}
        assert stored["staff-answer"].ticket_id == 1
        assert stored["staff-answer"].direction == "out"
        assert stored["sent"].ticket_id is None  # kept, attached to nothing
        assert s.scalar(select(func.count()).select_from(OutboxRow)) == 1  # the ack only
    assert len(stack.messages(CUSTOMER)) == 1 and message_from_bytes(ack)
    # The first-response clock is met by the answer.
    app.scheduler.tick(datetime.now(UTC) + timedelta(days=2))
    with app.sessions() as s:
        states = {c.kind: c.state for c in s.scalars(select(TicketClock))}
    assert states["first_response"] == "met"
