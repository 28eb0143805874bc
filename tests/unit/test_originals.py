"""Original messages attached to mail for tier groups."""

from __future__ import annotations

import base64
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default

from mailflow.originals import attach_originals
from tests.mails import mail


def _outer() -> EmailMessage:
    m = EmailMessage(policy=SMTP)
    m["From"], m["To"], m["Subject"] = "support@example.test", "tier2@example.test", "x"
    m.set_content("summary")
    m.add_alternative("<p>summary</p>", subtype="html")
    return m


def test_originals_are_message_rfc822_byte_for_byte_readable() -> None:
    first = mail(subject="Grüße: kaputt", body="Der Drucker ist kaputt. Grüße\n")
    second = mail(subject="more", html="<b>bold</b>")
    m = _outer()
    attach_originals(m, [base64.b64encode(r).decode() for r in (first, second)])
    out = message_from_bytes(m.as_bytes(), policy=default)
    assert isinstance(out, EmailMessage)
    assert out.get_content_type() == "multipart/mixed"
    atts = list(out.iter_attachments())
    assert [a.get_content_type() for a in atts] == ["message/rfc822"] * 2
    assert [a.get_filename() for a in atts] == ["original-1.eml", "original-2.eml"]
    inner = atts[0].get_content()
    assert inner["Subject"] == "Grüße: kaputt"
    assert "Drucker ist kaputt" in inner.get_body(("plain",)).get_content()


def test_nothing_to_attach_leaves_the_mail_alone_and_bad_base64_is_skipped() -> None:
    m = _outer()
    attach_originals(m, [])
    attach_originals(m, ["not base64!"])
    assert m.get_content_type() == "multipart/alternative"
