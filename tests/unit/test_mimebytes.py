"""The directly built MIME bytes (mailflow.mimebytes) read as the email package's did.

``_old_bytes`` is the path the outbox used before, kept here verbatim as the reference:
an ``EmailMessage`` with the same headers, ``set_content`` in quoted-printable, the
originals attached by ``mailflow.originals``, ``as_bytes()``. Both outputs are parsed
with ``BytesParser(policy=default)`` and must give the same headers (same order, same
values) and the same decoded bodies, for every shipped template and for hostile input.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import SMTP, SMTPUTF8, default
from email.utils import format_datetime, formataddr
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow import mimebytes
from mailflow.addresses import outgoing_address
from mailflow.compose import (
    SAMPLE_CONTEXT,
    Composer,
    Envelope,
    header_safe,
    header_text,
    msg_id_list,
)
from mailflow.originals import attach_originals
from mailflow.template_samples import sample_context
from tests.mails import mail
from tests.unit.test_hostile_headers import (
    EXPECTED,
    _check,
    hostile_address,
    hostile_id,
    hostile_text,
)

COMPOSER = Composer(None)
ENV = Envelope(mail_from="support@example.test", from_name="Support desk",
               to="ann@example.test", message_id="mf.12.abcdefghijkm.3@example.test",
               date=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
               reply_to="support+12.abcdefghijkm@example.test", in_reply_to="orig@x.test",
               references=("first@x.test", "orig@x.test"),
               extra_headers=(("X-Mailflow-Ticket", "SUP-12"),))


def _old_bytes(name: str, context: dict[str, Any], env: Envelope,
               originals: Sequence[bytes] = ()) -> bytes:
    """compose.Composer.build + originals.attach_originals + as_bytes, as before."""
    subject, text, html = COMPOSER.render(name, context)
    to, utf8 = outgoing_address(header_safe(env.to))
    msg = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
    msg["From"] = formataddr((header_text(env.from_name), env.mail_from))
    try:
        msg["To"] = to
        got = [a.addr_spec for a in msg["To"].addresses]
    except (ValueError, IndexError, TypeError, AttributeError):
        got = []
    if got != [to]:
        del msg["To"]
        msg["To"] = "undisclosed-recipients:;"
    msg["Subject"] = header_text(subject)
    msg["Date"] = format_datetime(env.date)
    msg["Message-ID"] = f"<{env.message_id}>"
    if env.reply_to:
        msg["Reply-To"] = env.reply_to
    in_reply_to = msg_id_list([env.in_reply_to or ""])
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to[0]}>"
    refs = msg_id_list(env.references)
    if refs:
        refs = refs if len(refs) <= 10 else refs[:1] + refs[-9:]
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if env.auto_submitted:
        msg["Auto-Submitted"] = env.auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    for k, v in env.extra_headers:
        msg[k] = header_text(v)
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    attach_originals(msg, [base64.b64encode(o).decode() for o in originals])
    return msg.as_bytes()


def _read(m: Message) -> Any:
    """Headers (all but the MIME ones, whose boundary is random) and, per leaf part,
    its type, file name and decoded content; an attached message is read the same way.

    Values are compared stripped: the email package folds a long value right after
    the colon ("Subject:" CRLF " Referral to ..."), which a reader sees as a leading
    space; plain ASCII written directly does not (checked for the shipped templates)."""
    assert isinstance(m, EmailMessage)
    head = [(k, str(v).strip()) for k, v in m.items()
            if k.lower() not in ("content-type", "mime-version", "content-transfer-encoding")]
    params = {k: v for k, v in m["Content-Type"].params.items() if k != "boundary"} \
        if m["Content-Type"] else {}
    if m.get_content_type() == "message/rfc822":
        [inner] = m.get_payload()
        body: Any = _read(inner)
    elif m.is_multipart():
        body = [_read(p) for p in m.iter_parts()]
    else:
        body = m.get_content()
    return head, m.get_content_type(), params, m.get_filename(), body


def _squeezed(name: str) -> str:
    """A display name without its whitespace: a reader unfolds a tab in a phrase to a
    space and puts one between RFC 2047 words."""
    return "".join(name.split())


def _but_from(read: Any) -> Any:
    return ([(k, v) for k, v in read[0] if k != "From"], *read[1:])


def _same(name: str, context: dict[str, Any], env: Envelope,
          originals: Sequence[bytes] = ()) -> bytes:
    new = COMPOSER.build_bytes(name, context, env, originals)
    old = _old_bytes(name, context, env, originals)
    parse = BytesParser(policy=default).parsebytes
    try:
        before = _read(parse(old))
    except TypeError:
        # The old path folded a long odd address ("To:" CRLF " .x@y") where the email
        # package's own parser then fails; the direct bytes never fold To.
        assert b"To:\r\n ." in old
        before = None
    # From is checked against what was meant, not against the old path: the email
    # package refolded a non-ASCII name with specials unquoted ("Support \x80 [" lost
    # its address). Python reads a space into the joins between RFC 2047 words,
    # wherever they fall, so names are compared without whitespace.
    (sender,) = parse(new)["From"].addresses
    assert sender.addr_spec == env.mail_from
    assert _squeezed(sender.display_name) == _squeezed(header_text(env.from_name))
    if before is not None:
        assert _but_from(_read(parse(new))) == _but_from(before)
    else:
        _read(parse(new))
    for line in new.split(b"\r\n"):
        assert len(line) <= 998 and b"\r" not in line and b"\n" not in line
    head = new.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() or not outgoing_address(env.to)[0].isascii()
    return new


@pytest.mark.parametrize("name", COMPOSER.names())
def test_every_shipped_template_reads_the_same(name: str) -> None:
    new = _same(name, sample_context(name), ENV)
    assert all(str(v) == str(v).strip() for v in BytesParser(policy=default).parsebytes(new)
               .values())
    _same(name, sample_context(name), replace(ENV, in_reply_to=None, references=(),
                                              reply_to=None, extra_headers=()))


def test_referral_originals_read_the_same_and_travel_as_they_came() -> None:
    first = mail(subject="Grüße: kaputt", body="Der Drucker ist kaputt. Grüße\n")
    second = mail(subject="more", html="<b>bold</b>\n" + "long " * 300)
    lf_only = b"From: a@x.test\nSubject: plain\n\nbody line\nlast line"
    new = _same("referral", sample_context("referral"), ENV, [first, second, lf_only])
    parts = list(BytesParser(policy=default).parsebytes(new).iter_attachments())
    assert [p.get_content_type() for p in parts] == ["message/rfc822"] * 3
    # The original's own bytes, only line ends made CRLF.
    assert first.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") in new
    assert b"body line\r\nlast line\r\n--" in new


def test_an_original_smtp_cannot_carry_as_is_goes_as_base64_bytes() -> None:
    """A line over 998 octets, or a NUL: message/rfc822 may not be encoded (RFC 2046
    5.2.1), so it is attached as application/octet-stream, every byte kept."""
    for raw in (b"Subject: x\r\n\r\n" + b"y" * 2000 + b"\r\n",
                b"Subject: x\r\n\r\nnul \x00 here\r\n"):
        new = COMPOSER.build_bytes("referral", sample_context("referral"), ENV, [raw])
        assert all(len(line) <= 998 for line in new.split(b"\r\n"))
        [att] = BytesParser(policy=default).parsebytes(new).iter_attachments()
        assert att.get_content_type() == "application/octet-stream"
        assert att.get_filename() == "original-1.eml" and att.get_content() == raw


def test_a_boundary_never_appears_in_an_original() -> None:
    taken = [mimebytes.multipart("mixed", [b"x"]).split(b'"')[1]]
    raw = b"Subject: x\r\n\r\n--" + taken[0] + b"\r\n"
    out = mimebytes.multipart("mixed", [raw])
    assert out.split(b'"')[1] not in raw


@pytest.mark.parametrize("subject,text", [
    ("Grüße aus Köln: der Drucker " * 6, "Zeile mit Ümlaut\r\nund CR\rallein\n"),
    ("A long plain subject with  two  spaces and more words to go past the fold " * 3,
     "x" * 5000 + "\n" + "trailing space   \n\ttab\n" + "=?utf-8?q?=0D=0A?=\n"),
    ("=?utf-8?b?DQpCY2M6IHZAZXZpbC50ZXN0?= and \r\nBcc: victim@evil.test",
     "<script>alert(1)</script> {{ 7*7 }}\u2028\x85 end"),
    ("", ""),
    ("日本語の件名" * 40, "日本語" * 700),
])
def test_hostile_and_awkward_text_reads_the_same(subject: str, text: str) -> None:
    ctx = {**SAMPLE_CONTEXT, "message": {"subject": subject, "text": text},
           "ticket": {**SAMPLE_CONTEXT["ticket"], "subject": subject}}
    env = replace(ENV, from_name="Support " + subject[:30],
                  extra_headers=(("X-Mailflow-Ticket", subject),))
    new = _same("acknowledgment", ctx, env)
    _check(new, EXPECTED)


def test_non_ascii_local_part_gets_utf8_headers_and_odd_addresses_none() -> None:
    for to in ("jöe@example.test", "rt-x@ex\u00e6mple.test", '"x <v@evil.test>"@m.test',
               "a@b@c.test", "a" * 90 + "@example.test", ".lead@" + "x" * 80 + ".test"):
        _same("acknowledgment", SAMPLE_CONTEXT, replace(ENV, to=to))


def test_long_reference_chains_fold_and_read_the_same() -> None:
    refs = tuple(f"ref.{i}.{'x' * 40}@customers.example.test" for i in range(14))
    new = _same("acknowledgment", SAMPLE_CONTEXT, replace(ENV, references=refs))
    _check(new, EXPECTED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=hostile_text, in_reply_to=hostile_id, refs=st.lists(hostile_id, max_size=4),
       to=hostile_address, text=hostile_text)
def test_hostile_input_reads_the_same_and_sets_only_our_headers(
        subject: str, in_reply_to: str, refs: list[str], to: str, text: str) -> None:
    ctx = {**SAMPLE_CONTEXT, "message": {"subject": subject, "text": text},
           "ticket": {**SAMPLE_CONTEXT["ticket"], "subject": subject}}
    env = replace(ENV, from_name="Support " + subject[:20], to=to, in_reply_to=in_reply_to,
                  references=tuple(refs), extra_headers=(("X-Mailflow-Ticket", subject),))
    _check(_same("acknowledgment", ctx, env), EXPECTED)


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                     max_size=400))
def test_plain_ascii_folding_unfolds_to_the_value(value: str) -> None:
    value = header_text(value)
    line = mimebytes.header(SMTP, "Subject", value)
    assert all(len(x) <= 998 for x in line.split(b"\r\n"))
    assert str(BytesParser(policy=default).parsebytes(line + b"\r\n")["Subject"]) == \
        str(BytesParser(policy=default).parsebytes(
            mimebytes.registry_header(SMTP, "Subject", value) + b"\r\n")["Subject"])


@pytest.mark.parametrize("name", ["Kundendienst Müller & Co. KG", "Support: 日本語",
                                  "Support :. \x80", "Support \x80 ["])
def test_a_from_name_with_specials_and_non_ascii_reads_back(name: str) -> None:
    """An administrator's ``from_name`` with both (a company name): one address, this
    name, our address. The email package's refold wrote such a name unquoted (a group
    "Support :" or no address at all)."""
    raw = COMPOSER.build_bytes("acknowledgment", dict(SAMPLE_CONTEXT),
                               replace(ENV, from_name=name))
    (sender,) = BytesParser(policy=default).parsebytes(raw)["From"].addresses
    assert sender.addr_spec == ENV.mail_from
    assert _squeezed(sender.display_name) == _squeezed(header_text(name))
