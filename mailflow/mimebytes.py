"""The bytes of an outgoing mail, assembled directly rather than through ``email.message``.

Why: building an ``EmailMessage`` tree and serialising it cost ~1.4 ms a mail (every
header parsed into a header object and refolded, ``set_content``, the generator), 25
times what rendering the templates costs, and it capped the sender (bench/RESULTS.md,
end to end). Every mail mailflow sends has one shape: a fixed list of headers that
:mod:`mailflow.compose` has already made safe, a text and an HTML part in
quoted-printable as ``multipart/alternative``, and for tier groups the customer's
originals as ``message/rfc822`` inside ``multipart/mixed``. That shape is assembled
here; every encoding is the standard library's (``quoprimime`` for bodies, the header
registry's folding and RFC 2047 for any header value that is not plain ASCII, ``base64``).
tests/unit/test_mimebytes.py shows the result parses to the same headers and decoded
bodies as :meth:`mailflow.compose.Composer.build`.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Sequence
from email import quoprimime
from email.errors import HeaderParseError
from email.policy import EmailPolicy
from typing import Any

CRLF = b"\r\n"
# RFC 5322 2.1.1: lines SHOULD be at most 78 characters, MUST be at most 998.
_FOLD_AT = 78
_MAX_LINE = 998
# An address written as is: a dot-atom local part and an ASCII domain, nothing the
# header parser could read as two addresses, a comment or an encoded word ("=?").
_PLAIN_ADDR = re.compile(r"[A-Za-z0-9!#$%&'*+/=^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=^_`{|}~-]+)*"
                         r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _plain(value: str) -> bool:
    """Printable ASCII that no reader decodes (no encoded-word start)."""
    return value.isascii() and value.isprintable() and "=?" not in value


def header(policy: EmailPolicy[Any], name: str, value: str) -> bytes:
    """One header field, CRLF-terminated.

    Printable ASCII is written as is, folded at spaces (unfolding gives the value
    back); anything else (non-ASCII, which needs RFC 2047 or, under an SMTPUTF8
    policy, UTF-8) goes through the header registry, as ``EmailMessage`` would.
    """
    if _plain(value):
        folded = _fold(name, value)
        if folded is not None:
            return folded
    return registry_header(policy, name, value)


def address_header(policy: EmailPolicy[Any], name: str, value: str) -> bytes:
    """A header holding one address as ``formataddr`` writes it (ASCII: the display
    name quoted where it holds specials, or one RFC 2047 word when it is not ASCII),
    written as is. The header registry, given that word, decodes it and folds the name
    back unquoted: "Müller & Co." came out as an address nobody could parse back."""
    if value.isascii() and value.isprintable():
        folded = _fold(name, value)
        if folded is not None:
            return folded
    return registry_header(policy, name, value)


def registry_header(policy: EmailPolicy[Any], name: str, value: str) -> bytes:
    """The field as the email package writes it (parsed, then folded); refuses CR/LF."""
    name, parsed = policy.header_store_parse(name, value)
    return policy.fold_binary(name, parsed)


def to_header(policy: EmailPolicy[Any], addr: str) -> bytes:
    """``To:`` holding exactly ``addr``, or no address at all.

    The envelope recipient is what delivery uses (:mod:`mailflow.smtp` refuses an
    address it cannot send safely); the header must never name another address than
    that one. Never folded: the email package cannot read back some folded addresses
    ("To:" CRLF " .x@y" raises in its parser).
    """
    line = f"To: {addr}"
    if len(line) > _MAX_LINE or not (addr.isascii() or policy.utf8) or not (
            (_PLAIN_ADDR.fullmatch(addr) and "=?" not in addr) or _reads_back(policy, addr)):
        line = "To: undisclosed-recipients:;"
    return line.encode("utf-8") + CRLF


def _reads_back(policy: EmailPolicy[Any], addr: str) -> bool:
    """Does the header parser read ``addr`` as exactly this one address?"""
    try:
        _, parsed = policy.header_store_parse("To", addr)
        return [a.addr_spec for a in parsed.addresses] == [addr]
    except (HeaderParseError, ValueError, IndexError, TypeError, AttributeError):
        return False  # the parser's own failures on odd input (TypeError included)


def _fold(name: str, value: str) -> bytes | None:
    """``name: value`` folded before spaces to stay within 78 characters where it can;
    None if a single word would make a line longer than 998."""
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT:
        return line.encode("ascii") + CRLF
    lines: list[str] = []
    start = 0
    cut = -1
    pos = line.find(" ", len(name) + 2)
    while pos != -1:
        if pos - start > _FOLD_AT and cut > start:
            lines.append(line[start:cut])
            start = cut  # the continuation line begins with the space
        cut = pos
        pos = line.find(" ", pos + 1)
    if len(line) - start > _FOLD_AT and cut > start:
        lines.append(line[start:cut])
        start = cut
    lines.append(line[start:])
    if any(len(ln) > _MAX_LINE or not ln.strip() for ln in lines):
        return None
    return "\r\n".join(lines).encode("ascii") + CRLF


def text_part(subtype: str, text: str) -> bytes:
    """A ``text/*`` part in quoted-printable: line ends normalised as ``set_content``
    does, lines at most 78 characters whatever the text holds."""
    lines = text.encode("utf-8").splitlines()
    body = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"),
                                  _FOLD_AT, eol="\r\n")
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode("ascii") \
        + body.encode("ascii")


def original_part(n: int, raw: bytes) -> bytes:
    """A customer's original message as an attachment, its bytes as they came.

    ``message/rfc822`` may only be 7bit, 8bit or binary (RFC 2046 5.2.1): with its line
    ends made CRLF it goes as it is when every line fits SMTP (at most 998 octets, no
    NUL); otherwise it is attached as ``application/octet-stream`` in base64, the bytes
    still intact for the group's mail client.
    """
    lines = raw.splitlines()
    body = CRLF.join(lines) + (CRLF if raw.endswith((b"\n", b"\r")) else b"")
    disposition = f'Content-Disposition: attachment; filename="original-{n}.eml"\r\n'
    if b"\x00" not in body and all(len(ln) <= _MAX_LINE for ln in lines):
        cte = "7bit" if body.isascii() else "8bit"
        return (f"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: {cte}\r\n"
                f"{disposition}\r\n").encode("ascii") + body
    return ("Content-Type: application/octet-stream\r\n"
            f"Content-Transfer-Encoding: base64\r\n{disposition}\r\n").encode("ascii") \
        + base64.encodebytes(raw).replace(b"\n", CRLF)


def multipart(subtype: str, parts: Sequence[bytes]) -> bytes:
    """A ``multipart/*`` entity (its Content-Type, a blank line, the parts), with a
    boundary that none of the parts contains (RFC 2046 5.1.1)."""
    while True:
        boundary = f"=_mf_{secrets.token_hex(12)}".encode("ascii")
        if not any(b"--" + boundary in p for p in parts):
            break
    dash = b"--" + boundary
    out = [b"Content-Type: multipart/", subtype.encode("ascii"), b'; boundary="', boundary,
           b'"\r\n\r\n']
    for p in parts:
        out += [dash, CRLF, p, CRLF]
    out += [dash, b"--", CRLF]
    return b"".join(out)


def mail(headers: Sequence[bytes], text: str, html: str, originals: Sequence[bytes] = ()
         ) -> bytes:
    """Headers (each from :func:`header`), then the body: text and HTML as
    ``multipart/alternative``, inside ``multipart/mixed`` with the originals if any."""
    body = multipart("alternative", [text_part("plain", text), text_part("html", html)])
    if originals:
        body = multipart("mixed", [body.rstrip(CRLF),
                                   *(original_part(n, raw)
                                     for n, raw in enumerate(originals, 1))])
    return b"".join(headers) + b"MIME-Version: 1.0\r\n" + body
