from __future__ import annotations

import pytest

from mailflow.parse import Unparseable, decode_bytes, decode_text, parse
from tests.mails import mail


def test_rfc2047_subject_and_names() -> None:
    raw = (b"From: =?iso-8859-1?q?J=F6rg_M=FCller?= <JOERG@Example.TEST>\r\n"
           b"To: support@example.test\r\nSubject: =?utf-8?b?w5xiZXJ3ZWlzdW5n?= kaputt\r\n"
           b"Message-ID: <a@b>\r\n\r\nHallo\r\n")
    m = parse(raw)
    assert m.subject == "\u00dcberweisung kaputt"
    assert m.from_name == "J\u00f6rg M\u00fcller" and m.from_addr == "joerg@example.test"
    assert m.message_id == "a@b"


def test_raw_8bit_header_and_mislabelled_body() -> None:
    raw = ("From: a@example.test\nSubject: caf\u00e9 ordering\nContent-Type: text/plain; "
           "charset=us-ascii\n\nna\u00efve r\u00e9sum\u00e9\n").encode("utf-8")
    m = parse(raw)
    assert m.subject == "caf\u00e9 ordering"
    assert "na\u00efve r\u00e9sum\u00e9" in m.text


def test_unknown_charset_does_not_crash() -> None:
    assert decode_bytes("\u00e4".encode("cp1252"), "x-bogus-charset") == "\u00e4"
    assert decode_bytes(b"\x81\x82", "utf-8")  # never raises


def test_header_crlf_collapsed() -> None:
    assert decode_text("a\r\n b\r\nBcc: x@y") == "a b Bcc: x@y"


def test_html_only_mail_becomes_readable_text() -> None:
    m = parse(mail(body=None, html="<p>Hello <b>there</b></p><ul><li>one</li></ul>"
                                   "<script>evil()</script>"))
    assert m.html_only and "Hello there" in m.text and "one" in m.text
    assert "evil" not in m.text


def test_attachments_recorded_with_name_type_size() -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.test", "s@example.test", "log"
    msg.set_content("see attached")
    msg.add_attachment(b"x" * 1000, maintype="application", subtype="octet-stream",
                       filename="crash.log")
    m = parse(msg.as_bytes())
    [a] = m.attachments
    assert (a.filename, a.content_type, a.size) == ("crash.log", "application/octet-stream",
                                                   1000)
    assert m.text.strip() == "see attached"


def test_invalid_from_is_flagged_not_fatal() -> None:
    m = parse(b"From: not an address\nSubject: hi\n\nbody\n")
    assert not m.from_valid


def test_references_and_in_reply_to() -> None:
    m = parse(b"From: a@example.test\nIn-Reply-To: <x@y>\nReferences: <r1@y> <r2@y>\n\nb\n")
    assert m.in_reply_to == "x@y" and m.references == ("r1@y", "r2@y")


@pytest.mark.parametrize("raw", [b"", b"   \r\n", b"\x00\x01binary garbage without headers",
                                 b"just some text\nwithout headers\n"])
def test_unparseable(raw: bytes) -> None:
    with pytest.raises(Unparseable):
        parse(raw)


def test_dedupe_key_ignores_added_transport_headers() -> None:
    raw = mail()
    assert parse(raw).dedupe_key == parse(b"Received: from x by y\r\n" + raw).dedupe_key
    assert parse(raw).dedupe_key == parse(raw.replace(b"\r\n", b"\n")).dedupe_key
    other = raw.replace(b"the printer is broken", b"the scanner is broken")
    assert parse(other).dedupe_key != parse(raw).dedupe_key  # reused Message-ID


def test_dsn_report_extracts_original() -> None:
    raw = (b"From: MAILER-DAEMON@example.test\nTo: support@example.test\nSubject: Undelivered\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
           b"--B\nContent-Type: text/plain\n\nfailed\n"
           b"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
           b"Final-Recipient: rfc822; gone@example.test\nAction: failed\nStatus: 5.1.1\n"
           b"Diagnostic-Code: smtp; 550 no such user\n\n"
           b"--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: <mf.3.abc@example.test>\n"
           b"Subject: x\n\n--B--\n")
    m = parse(raw)
    assert m.report is not None
    assert m.report.original_message_id == "mf.3.abc@example.test"
    assert m.report.recipients == ("gone@example.test",) and m.report.status == "5.1.1"


@pytest.mark.parametrize("addr", [
    "ann@example.test", "a.b+tag@sub.example.com", "x@bigcorp.example", "o'brien@x.ie",
    "a..b@x.test", ".a@x.test", "a@x.invalid", "a@localhost", "a@x", "a@-x.test",
    "a@x..test", "ann@exa_mple.test", "\u00e4nn@example.test", "a@x.test.",
    "a" * 65 + "@x.test", "a@" + "b" * 64 + ".test", "a@x.local", "a@1.2.3.4"])
def test_fast_address_check_agrees_with_email_validator(addr: str) -> None:
    from mailflow.parse import _valid_address, _valid_address_full

    assert _valid_address(addr) == _valid_address_full(addr)


@pytest.mark.parametrize("value", [
    "Ann <ann@x.test>", '"Doe, John" <j@x.test>', "=?utf-8?q?J=C3=B6rg?= <j@x.test>",
    "a@b.test", "Ann Example <ANN@X.test>", "a@b.test, c@d.test", "x (comment) <a@b.test>",
    "<a@b.test>", "Ann@x.test (Ann)", "undisclosed-recipients:;", '"a@b" <c@d.test>'])
def test_fast_address_parse_agrees_with_getaddresses(value: str) -> None:
    from email import message_from_string
    from email.utils import getaddresses

    from mailflow.parse import _addresses

    want = [(decode_text(n), a.lower()) for n, a in getaddresses([value]) if a and "@" in a]
    got = _addresses(message_from_string(f"To: {value}\n\nx"), "To")
    assert [a for _, a in got] == [a for _, a in want]
    if "(" not in value:  # the strict parser leaves comments out of display names
        assert got == want
