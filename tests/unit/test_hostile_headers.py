"""Issue 10, items 1 and 3: customer text never becomes a header of an outgoing mail.

Property tests: whatever a customer puts into a subject, a Message-ID, a References
chain or an address (encoded once or twice, folded, with CR/LF, NUL, non-ASCII domains),
the acknowledgment built from it has exactly the headers we set, and none of them holds
CR or LF, neither as written nor once decoded.
"""

from __future__ import annotations

import base64
import quopri
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.compose import SAMPLE_CONTEXT, Composer, Envelope, header_text
from mailflow.msgid import message_ids, valid_msg_id
from mailflow.parse import parse

COMPOSER = Composer(None)
EXPECTED = {"from", "to", "subject", "date", "message-id", "reply-to", "in-reply-to",
            "references", "auto-submitted", "x-auto-response-suppress", "x-mailflow-ticket",
            "mime-version", "content-type"}
INJECT = "\r\nBcc: victim@evil.test\r\nX-Injected: yes"


def _ew(text: str, enc: str = "b") -> str:
    """``text`` as one RFC 2047 encoded word."""
    data = text.encode("utf-8")
    if enc == "b":
        return f"=?utf-8?b?{base64.b64encode(data).decode()}?="
    q = quopri.encodestring(data, header=True).decode().replace("=\n", "")
    return f"=?utf-8?q?{q.replace('?', '=3F')}?="


# Text a customer might send: printable, control characters, and (doubly) encoded words
# that hide CR/LF and header lines.
_piece = st.one_of(
    st.text(min_size=0, max_size=30),
    st.sampled_from(["\r\n", "\n", "\r", "\x00", "=?", "?=", "=?utf-8?q?", "=0D=0A",
                     "Bcc: victim@evil.test", INJECT, "\u2028", "\x85"]),
    st.builds(lambda t, e: _ew(t + INJECT, e), st.text(max_size=10), st.sampled_from("bq")),
    st.builds(lambda t, e: _ew(_ew(t + INJECT, "q"), e), st.text(max_size=10),
              st.sampled_from("bq")),
)
hostile_text = st.lists(_piece, max_size=6).map("".join)
hostile_id = st.one_of(
    hostile_text,
    st.builds(lambda t: _ew(t + INJECT) + "@evil.test", st.text(max_size=8)),
    st.just("=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXM=?=@evil.test"),
    st.from_regex(r"[a-z0-9.=?_-]{1,20}@[a-z0-9.-]{1,20}", fullmatch=True),
)
_label = st.text(alphabet=st.characters(min_codepoint=0x61, max_codepoint=0x24F,
                                         blacklist_categories=("Cs", "Cc", "Z")),
                 min_size=1, max_size=70)
hostile_address = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}.test",
    st.from_regex(r"[a-z0-9._+-]{1,20}", fullmatch=True) | st.just("j\u00f6e"),
    st.lists(_label, min_size=1, max_size=3))


def _check(raw: bytes, given_headers: set[str]) -> None:
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line
        if line[:1] not in (b" ", b"\t"):
            # Every header line starts a header we set; continuation lines are indented.
            assert line.split(b":", 1)[0].decode().lower() in given_headers, line
    m = message_from_bytes(raw, policy=default)
    names = {k.lower() for k in m}
    assert names <= given_headers, names - given_headers
    assert "bcc" not in names and "x-injected" not in names
    for k, v in m.items():
        text = str(v)
        assert "\r" not in text and "\n" not in text, (k, text)


def _ack(subject: str, in_reply_to: str | None, refs: tuple[str, ...], to: str) -> bytes:
    ctx = {**SAMPLE_CONTEXT, "message": {"subject": subject, "text": "hello"},
           "ticket": {**SAMPLE_CONTEXT["ticket"], "subject": subject}}
    env = Envelope(mail_from="support@example.test", from_name="Support " + subject[:20],
                   to=to, message_id="mf.1.abcdefghijkm.1@example.test",
                   date=datetime(2026, 1, 5, tzinfo=UTC), reply_to="support@example.test",
                   in_reply_to=in_reply_to, references=refs,
                   extra_headers=(("X-Mailflow-Ticket", subject),))
    return COMPOSER.build("acknowledgment", ctx, env).as_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=hostile_text, in_reply_to=hostile_id, refs=st.lists(hostile_id, max_size=4),
       to=hostile_address)
def test_composed_headers_hold_no_line_break_and_nothing_extra(
        subject: str, in_reply_to: str, refs: list[str], to: str) -> None:
    _check(_ack(subject, in_reply_to, tuple(refs), to), EXPECTED)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=hostile_text, mid=hostile_id, refs=st.lists(hostile_id, max_size=4))
def test_parsed_hostile_mail_to_ack_end_to_end(subject: str, mid: str, refs: list[str]) -> None:
    """What the parser makes of hostile headers, composed into an ack: still clean."""
    def fold(v: str) -> bytes:
        return v.replace("\r", "").replace("\n", "\r\n ").encode("utf-8", "surrogatepass")

    raw = (b"From: Ann <ann@example.test>\r\nTo: support@example.test\r\n"
           b"Subject: " + fold(_ew(subject, "b")) + b"\r\n"
           b"Message-ID: <" + fold(mid) + b">\r\n"
           b"References: " + fold(" ".join(f"<{r}>" for r in refs)) + b"\r\n\r\nhi\r\n")
    msg = parse(raw)
    assert all(valid_msg_id(i) for i in (msg.message_id, msg.in_reply_to, *msg.references)
               if i)
    assert "\x00" not in msg.subject and "\r" not in msg.subject and "\n" not in msg.subject
    _check(_ack(msg.subject, msg.message_id, msg.references, msg.from_addr), EXPECTED)


def test_double_encoded_subject_is_not_decoded_twice() -> None:
    """The issue's example: =?utf-8?b?...?= of =?utf-8?q?x=0D=0ABcc:_victim@evil.test?="""
    inner = "=?utf-8?q?x=0D=0ABcc:_victim@evil.test?="
    raw = (b"From: ann@example.test\r\nTo: support@example.test\r\nSubject: "
           + _ew(inner).encode() + b"\r\nMessage-ID: <a@example.test>\r\n\r\nhi\r\n")
    msg = parse(raw)
    assert msg.subject == inner  # decoded once: that is what the customer's client shows
    out = _ack(msg.subject, msg.message_id, (), msg.from_addr)
    assert b"\r\nBcc:" not in out
    m = message_from_bytes(out, policy=default)
    assert m["Bcc"] is None
    assert str(m["Subject"]).startswith("Re: =\u2060?utf-8?q?x=0D=0ABcc")


def test_encoded_message_ids_are_not_echoed() -> None:
    """The issue's Message-ID and References examples never reach our headers."""
    bad = "=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXM=?=@evil.test"
    raw = (b"From: ann@example.test\r\nTo: support@example.test\r\nSubject: hi\r\n"
           b"Message-ID: <" + bad.encode() + b">\r\nIn-Reply-To: <" + bad.encode() + b">\r\n"
           b"References: <ok@example.test> <" + bad.encode() + b">\r\n\r\nhi\r\n")
    msg = parse(raw)
    assert msg.message_id is None and msg.in_reply_to is None
    assert msg.references == ("ok@example.test",)
    # Even an id stored before this check is not echoed by compose.
    out = _ack("hi", bad, (bad, "ok@example.test"), "ann@example.test")
    m = message_from_bytes(out, policy=default)
    assert m["In-Reply-To"] is None and str(m["References"]) == "<ok@example.test>"
    assert m["X-Injected"] is None


def test_message_ids_valid_forms() -> None:
    assert message_ids("<a.b@c.test> <\"x:1\"@old.test> <[1.2.3.4]@h> <a@[10.0.0.1]>") == \
        ["a.b@c.test", '"x:1"@old.test', "a@[10.0.0.1]"]
    assert message_ids("<a b@c> <a..b@c> <@c> <a@> <yes> <a@b\x00c>") == []
    assert message_ids("bare@no.brackets") == ["bare@no.brackets"]


def test_header_text_neutralises_every_encoded_word_start() -> None:
    assert "=?" not in header_text("==?=?utf-8?q?a?= =??=")
    assert header_text("a\r\nb\x00c\u2028d") == "a b c d"


def test_long_internationalised_domain_is_one_ascii_to_line() -> None:
    """Item 3: A-labels, no encoded word, no broken folding."""
    domain = "\u00e6" * 40 + ".example"
    for to in (f"rt-{'x' * 40}@{domain}", "user@example.co\u00e6"):
        out = _ack("hi", None, (), to)
        head = out.split(b"\r\n\r\n", 1)[0]
        to_line = next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"to:"))
        assert b"=?" not in to_line and b"xn--" in to_line and to_line.isascii()
        m = message_from_bytes(out, policy=default)
        [addr] = m["To"].addresses
        assert addr.domain.startswith(("xn--", "example.xn--"))
