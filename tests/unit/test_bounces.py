"""Issue 10, item 8: bounces that are not RFC 3464 reports are recognised as bounces,
matched to what we sent where they quote it, and never answered."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mailflow.autoresponse import suppress_reason
from mailflow.parse import Unparseable, parse

CORPUS = Path(__file__).parents[2].parent / "shared" / "corpus"
BOUNCE_SETS = ("flufl-bounce", "perl-bounceparser", "sisimai-set-of-emails", "ruby-bounce_email")
OUR_ID = "mf.12.abcdefghijkm.0a1b2c3d@example.test"


def qmail_bounce(original_id: str, rcpt: str = "ann@customer.test",
                 sender: str = "MAILER-DAEMON@mx.customer.test",
                 subject: str = "failure notice") -> bytes:
    """The qmail format: no MIME report, the original quoted below a line."""
    return (f"From: {sender}\r\nTo: support@example.test\r\nSubject: {subject}\r\n"
            "Date: Mon, 05 Jan 2026 09:00:00 +0000\r\nMessage-ID: <b1@mx.customer.test>\r\n"
            "\r\nHi. This is the qmail-send program at mx.customer.test.\r\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
            f"<{rcpt}>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
            "--- Below this line is a copy of the message.\r\n\r\n"
            "From: support@example.test\r\n"
            f"To: {rcpt}\r\nSubject: Re: help [SUP-12]\r\nMessage-ID: <{original_id}>\r\n"
            "\r\nThank you for your message.\r\n").encode()


def test_qmail_bounce_of_our_mail_is_a_report_naming_it() -> None:
    msg = parse(qmail_bounce(OUR_ID))
    assert msg.report is not None
    assert msg.report.original_message_id == OUR_ID
    assert msg.report.recipients == ("ann@customer.test",)
    assert msg.report.status.startswith("5.")
    assert suppress_reason(msg, frozenset()) is not None


def test_bounce_subject_with_our_id_from_any_sender_is_a_report() -> None:
    msg = parse(qmail_bounce(OUR_ID, sender="gateway@customer.test",
                             subject="Mail could not be delivered"))
    assert msg.report is not None and msg.report.original_message_id == OUR_ID


def test_mailer_daemon_with_a_null_address_is_a_bounce() -> None:
    raw = qmail_bounce("other@x.test").replace(b"From: MAILER-DAEMON@mx.customer.test",
                                               b"From: MAILER-DAEMON <>\r\nReturn-Path: <>")
    msg = parse(raw)
    assert msg.report is not None and msg.report.original_message_id == "other@x.test"


@pytest.mark.parametrize("subject", ["Fwd: Undeliverable: my order", "Re: failure notice",
                                     "AW: Mail could not be delivered"])
def test_a_customer_forwarding_a_bounce_is_a_customer(subject: str) -> None:
    """A person asking us about a bounce they got is a ticket, not a bounce."""
    raw = qmail_bounce(OUR_ID, sender="Ann <ann@customer.test>", subject=subject)
    msg = parse(raw)
    assert msg.report is None and suppress_reason(msg, frozenset()) is None


def test_ordinary_mail_is_no_bounce() -> None:
    raw = (b"From: Ann <ann@customer.test>\r\nTo: support@example.test\r\n"
           b"Subject: my invoice was rejected\r\nMessage-ID: <a@customer.test>\r\n\r\n"
           b"Your system says 550 user unknown, why?\r\n")
    assert parse(raw).report is None


def _bounce_samples() -> list[str]:
    if not (CORPUS / "INDEX.tsv").is_file():
        return []
    with open(CORPUS / "INDEX.tsv", newline="", encoding="utf-8") as f:
        return [r["path"] for r in csv.DictReader(f, delimiter="\t")
                if r["source"] in BOUNCE_SETS and "bounce" in r["category"]]


@pytest.mark.skipif(not _bounce_samples(), reason=f"corpus not found at {CORPUS}")
def test_every_corpus_bounce_is_recognised() -> None:
    """Each sample gets a report, or at least a reason never to answer it."""
    reports = suppressed = 0
    missed = []
    for path in _bounce_samples():
        try:
            msg = parse((CORPUS / path).read_bytes())
        except Unparseable:
            continue
        if msg.report is not None:
            reports += 1
        elif suppress_reason(msg, frozenset({"support@example.test"})):
            suppressed += 1
        else:
            missed.append((path, msg.from_addr, msg.subject))
    print(f"\ncorpus bounces: {reports} reports, {suppressed} only suppressed")
    assert missed == []
    assert reports >= 0.95 * (reports + suppressed)
