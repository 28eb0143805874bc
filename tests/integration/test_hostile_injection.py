"""Issue 10, items 1 and 5 against Dovecot, the relay and both databases: the ack a
customer receives has only the headers we set, and an encoded NUL stops nothing."""

from __future__ import annotations

import base64
from email import message_from_bytes
from email.policy import default

from sqlalchemy import select

from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.store.models import Ticket
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail

OURS = {"from", "to", "subject", "date", "message-id", "reply-to", "in-reply-to",
        "references", "auto-submitted", "x-auto-response-suppress", "x-mailflow-ticket",
        "mime-version", "content-type"}
# Added by the relay and Dovecot on delivery.
DELIVERY = {"return-path", "delivered-to", "received"}


def _b64_word(text: str) -> bytes:
    return b"=?utf-8?b?" + base64.b64encode(text.encode()) + b"?="


def _assert_clean(raw: bytes) -> None:
    m = message_from_bytes(raw, policy=default)
    names = {k.lower() for k in m}
    assert names <= OURS | DELIVERY, names - OURS - DELIVERY
    for k, v in m.items():
        assert "\r" not in str(v) and "\n" not in str(v), (k, str(v))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head and b"\nX-Injected:" not in head


def test_double_encoded_subject_and_ids_inject_no_header(stack: MailStack, db_url: str,
                                                         make_app) -> None:
    app = make_app(stack, db_url)
    assert stack.relay is not None
    before = len(stack.relay.received)
    bad_id = b"=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXM=?=@evil.test"
    hostile = (b"From: Customer <customer@example.test>\r\nTo: support@example.test\r\n"
               b"Subject: " + _b64_word("=?utf-8?q?x=0D=0ABcc:_victim@evil.test?=") + b"\r\n"
               b"Date: Mon, 05 Jan 2026 09:00:00 +0000\r\n"
               b"Message-ID: <" + bad_id + b">\r\n"
               b"References: <ok.1@customer.test> <" + bad_id + b">\r\n\r\nHello\r\n")
    stack.append(SUPPORT, [hostile])
    res = run_once(app)
    assert res.outcomes["new"] == 1 and len(res.delivery.sent) == 1
    [ack] = stack.wait_for(CUSTOMER, 1)
    _assert_clean(ack)
    m = message_from_bytes(ack, policy=default)
    assert m["In-Reply-To"] is None  # the customer's id was not a valid msg-id
    assert "evil" not in str(m["References"] or "")
    assert "Bcc" not in str(m["Subject"]).split("=\u2060?")[0]
    assert [rcpts for _, rcpts, _ in stack.relay.received[before:]] == [[CUSTOMER]]


def test_encoded_nul_in_subject_and_name_stops_nothing(stack: MailStack, db_url: str,
                                                       make_app) -> None:
    """Item 5: PostgreSQL refuses NUL in text; the batch must still be stored."""
    app = make_app(stack, db_url)
    nul = (b"From: =?utf-8?q?Cus=00tomer?= <customer@example.test>\r\n"
           b"To: support@example.test\r\nSubject: =?utf-8?q?a=00b?=\r\n"
           b"Date: Mon, 05 Jan 2026 09:00:00 +0000\r\nMessage-ID: <nul.1@customer.test>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\nbody=00text\r\n")
    stack.append(SUPPORT, [nul, mail(subject="the next one")])
    res = run_once(app)
    assert res.outcomes["new"] == 2
    with app.sessions() as s:
        subjects = sorted(s.scalars(select(Ticket.subject)))
    assert subjects == ["ab", "the next one"]
    acks = stack.wait_for(CUSTOMER, 2)
    assert len(acks) == 2
    for ack in acks:
        _assert_clean(ack)
