from __future__ import annotations

import pytest

from mailflow.autoresponse import suppress_reason
from mailflow.parse import parse
from tests.mails import mail

OWN = frozenset({"support@example.test"})


@pytest.mark.parametrize(("headers", "sender", "expect"), [
    ({"Auto-Submitted": "auto-replied"}, None, "Auto-Submitted"),
    ({"Auto-Submitted": "auto-generated; owner-email=x"}, None, "Auto-Submitted"),
    ({"Precedence": "bulk"}, None, "Precedence"),
    ({"Precedence": "list"}, None, "Precedence"),
    ({"List-Id": "<users.lists.example.test>"}, None, "mailing list"),
    ({"X-Autoreply": "yes"}, None, "autoresponder"),
    ({"X-Autorespond": "yes"}, None, "autoresponder"),
    ({"Return-Path": "<>"}, None, "null return path"),
    ({}, "MAILER-DAEMON@example.test", "automatic address"),
    ({}, "postmaster@example.test", "automatic address"),
    ({}, "no-reply@shop.test", "automatic address"),
    ({}, "noreply@shop.test", "automatic address"),
    ({}, "support@example.test", "mailflow itself"),
])
def test_no_automatic_reply(headers: dict[str, str], sender: str | None, expect: str) -> None:
    m = parse(mail(sender=sender or "customer@example.test", headers=headers))
    reason = suppress_reason(m, OWN)
    assert reason is not None and expect in reason


def test_auto_submitted_no_and_plain_mail_get_a_reply() -> None:
    assert suppress_reason(parse(mail(headers={"Auto-Submitted": "no"})), OWN) is None
    assert suppress_reason(parse(mail()), OWN) is None


def test_dsn_gets_no_reply() -> None:
    raw = (b"From: someone@example.test\nContent-Type: multipart/report; boundary=B\n\n"
           b"--B\nContent-Type: text/plain\n\nx\n--B--\n")
    assert "report" in (suppress_reason(parse(raw), OWN) or "")


@pytest.mark.parametrize("subject", ["Automatic reply: Printer", "AutoReply: FYI",
                                     "[support #33575] AutoReply: FYI", "Out of Office: x",
                                     "Abwesenheitsnotiz: Drucker"])
def test_autoresponder_subjects_without_headers(subject: str) -> None:
    assert "autoresponder subject" in (suppress_reason(parse(mail(subject=subject)), OWN) or "")
