"""Never a mail loop: an autoresponder talks to mailflow for 5 minutes of simulated time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailflow.clock import FrozenClock
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.store.models import OutboxRow, QuarantinedMessage, TicketEvent
from tests.conftest import SUPPORT
from tests.mails import mail

ROBOT = "robot@example.test"


class Autoresponder:
    """Answers every mail in its INBOX once, as a naive vacation responder would."""

    def __init__(self, stack: MailStack, rfc3834: bool, threads: bool):
        self.stack, self.rfc3834, self.threads = stack, rfc3834, threads
        self.answered = 0

    def answer_new(self) -> int:
        from email import message_from_bytes
        from email.policy import default

        got = self.stack.messages(ROBOT)
        new = got[self.answered:]
        replies = []
        for raw in new:
            m = message_from_bytes(raw, policy=default)
            headers = {"Auto-Submitted": "auto-replied"} if self.rfc3834 else {}
            if self.threads:
                headers["In-Reply-To"] = str(m["Message-ID"])
            subject = f"Out of office: {m['Subject']}" if self.threads else "I am away"
            replies.append(mail(sender=f"Robot <{ROBOT}>", subject=subject,
                                body="I am out of the office.", headers=headers))
        self.answered = len(got)
        if replies:
            self.stack.append(SUPPORT, replies)
        return len(replies)


@pytest.mark.parametrize(("rfc3834", "threads"), [(True, True), (False, True), (False, False)])
def test_autoresponder_cannot_ping_pong(stack: MailStack, sqlite_url: str, make_app,
                                        rfc3834: bool, threads: bool) -> None:
    clock = FrozenClock()
    app = make_app(stack, sqlite_url, clock, acknowledgment={"max_per_sender_per_hour": 3})
    stack.append(SUPPORT, [mail(sender=f"Robot <{ROBOT}>", subject="Hello support")])
    bot = Autoresponder(stack, rfc3834, threads)
    for _ in range(30):  # 30 x 10 s = 5 minutes
        run_once(app)
        stack.wait_for(ROBOT, bot.answered + 1, timeout=0.3)
        bot.answer_new()
        clock.advance(timedelta(seconds=10))
    with app.sessions() as s:
        acks = s.scalar(select(func.count()).select_from(OutboxRow)
                        .where(OutboxRow.recipient == ROBOT)) or 0
        skipped = s.scalar(select(func.count()).select_from(TicketEvent)
                           .where(TicketEvent.kind == "ack-skipped")) or 0
    assert len(stack.messages(ROBOT)) == acks
    if threads:
        assert acks == 1  # its answers join the ticket: no new acknowledgments
    else:
        assert acks == 3 and skipped >= 1  # new tickets, but the hourly cap holds


def test_bounce_of_our_ack_is_recorded_on_the_ticket(stack: MailStack, sqlite_url: str,
                                                     make_app) -> None:
    app = make_app(stack, sqlite_url)
    stack.append(SUPPORT, [mail()])
    run_once(app)
    with app.sessions() as s:
        ours = s.scalars(select(OutboxRow.message_id)).one()
    dsn = (b"From: MAILER-DAEMON@mx.customer.test\r\nTo: support@example.test\r\n"
           b"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
           b"Message-ID: <dsn1@mx.customer.test>\r\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: text/plain\r\n\r\nmailbox full\r\n"
           b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
           b"Final-Recipient: rfc822; customer@example.test\r\nAction: failed\r\n"
           b"Status: 5.2.2\r\nDiagnostic-Code: smtp; 552 mailbox full\r\n\r\n"
           b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <"
           + ours.encode() + b">\r\n\r\n--B--\r\n")
    stack.append(SUPPORT, [dsn])
    res = run_once(app)
    assert res.outcomes["bounce"] == 1 and not res.delivery.sent
    with app.sessions() as s:
        ev = s.scalars(select(TicketEvent).where(TicketEvent.kind == "delivery-failed")).one()
    assert ev.ticket_id == 1 and "5.2.2" in ev.summary


def test_malformed_mail_is_quarantined_raw_and_listed(stack: MailStack, sqlite_url: str,
                                                      make_app) -> None:
    from click.testing import CliRunner

    from mailflow.cli import main

    app = make_app(stack, sqlite_url)
    garbage = b"\x00\x01\x02 this is not mail at all\r\n"
    stack.append(SUPPORT, [garbage, mail()])
    res = run_once(app)
    assert res.outcomes == {"quarantined": 1, "new": 1}
    with app.sessions() as s:
        q = s.scalars(select(QuarantinedMessage)).one()
        assert "not a mail message" in q.reason or "header" in q.reason
    cfg = app.settings.base_dir / "mailflow.yaml"
    cfg.write_text(f"database: {app.settings.database}\n")
    out = CliRunner().invoke(main, ["--config", str(cfg), "quarantine", "list"])
    assert out.exit_code == 0 and "UID" in out.output and "held" in out.output
    raw = CliRunner().invoke(main, ["--config", str(cfg), "quarantine", "show", str(q.id)])
    # Byte for byte what the server holds (Dovecot itself replaced the NUL on APPEND).
    assert raw.stdout_bytes == stack.messages(SUPPORT)[0]
    assert raw.stdout_bytes.endswith(b"\x01\x02 this is not mail at all\r\n")
    # Seen again (e.g. after a UIDVALIDITY reset): still only one quarantine entry.
    assert run_once(app).fetched == 0
