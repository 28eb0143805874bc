"""Raw bytes to :class:`Incoming`: the facts every later stage reads.

Speed matters here (every message passes through it), and so does correctness on real
mail. ``email.policy.default`` is correct but parses only ~700 small messages/s on this
hardware, so the structure is parsed with ``compat32`` and only the headers we need are
decoded, properly (RFC 2047, raw 8-bit, mislabelled charsets), on demand. The corpus
test holds this to policy.default's results on the fields we use.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from mailflow.quoting import split_reply

# Charset labels seen in real mail that Python's codecs do not know, or know as a
# smaller set than what senders actually use under that label.
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "x-unknown": "utf-8",
    "unknown-8bit": "utf-8",
    "x-user-defined": "utf-8",
    "default": "utf-8",
    "us-ascii": "ascii",
    "iso-8859-1": "cp1252",  # senders say latin-1 and send Windows quotes
    "latin1": "cp1252",
    "latin-1": "cp1252",
}
_ASCII_LIKE = {"ascii", "cp1252", "iso-8859-15"}
_WS = re.compile(r"\s+")
_SURROGATE = re.compile("[\udc80-\udcff]")
_MSGID = re.compile(r"<([^<>\s]+)>")


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class DeliveryReport:
    """What a bounce (RFC 3464 DSN) tells about the message it returns."""

    original_message_id: str | None
    recipients: tuple[str, ...]
    status: str
    diagnostic: str


@dataclass(frozen=True)
class Incoming:
    """One parsed message. Plain data: no I/O, safe to pass between threads."""

    raw: bytes
    dedupe_key: str
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    from_addr: str
    from_name: str
    from_valid: bool
    to: tuple[str, ...]
    cc: tuple[str, ...]
    # Envelope-ish recipients added by the delivering server (plus-address tokens).
    delivered_to: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    date: datetime | None
    text: str
    new_text: str
    html_only: bool
    attachments: tuple[AttachmentInfo, ...]
    content_type: str
    report: DeliveryReport | None
    defects: tuple[str, ...]
    _headers: tuple[tuple[str, str], ...] = field(repr=False)

    def header(self, name: str) -> str | None:
        """The first header of that name, decoded; None when absent."""
        lname = name.lower()
        for k, v in self._headers:
            if k == lname:
                return decode_text(v)
        return None

    def header_names(self) -> frozenset[str]:
        return frozenset(k for k, _ in self._headers)

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc + self.delivered_to


class Unparseable(Exception):
    """The bytes are not a mail message we can take in; the reason is for the admin."""


def _unsurrogate(value: str) -> str:
    """Raw 8-bit header bytes come through compat32 as surrogates: decode them."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    data = value.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def decode_text(value: object) -> str:
    """A header value as clean one-line text: RFC 2047 decoded, no CR/LF left."""
    if value is None:
        return ""
    text = _unsurrogate(str(value))
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except (HeaderParseError, LookupError, UnicodeError, ValueError, AssertionError):
            text = _decode_words_leniently(text)
    # Folding and any stray CR/LF collapse to single spaces: header values never carry
    # line breaks onward (that is how header injection starts).
    return _WS.sub(" ", text).strip()


def _decode_words_leniently(text: str) -> str:
    out = []
    try:
        parts = decode_header(text)
    except (HeaderParseError, ValueError, AssertionError):
        return text
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_bytes(chunk, charset))
    return "".join(out)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in a declared charset that may be wrong: never raises, loses little."""
    label = (charset or "").strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label) or "ascii"
    if label in _ASCII_LIKE and not data.isascii():
        # Mislabelled UTF-8 is the commonest charset lie; valid multi-byte UTF-8 is
        # almost never produced by accident in Latin text.
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode(label)
    except (LookupError, UnicodeDecodeError):
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def normalize_address(addr: str) -> str:
    return addr.strip().strip("<>").lower()


def _raw_values(msg: Message, name: str) -> list[str]:
    """Header values as raw text: compat32's ``get()`` would turn raw 8-bit bytes into
    an unknown-8bit Header and lose them."""
    lname = name.lower()
    return [v if isinstance(v, str) else str(v) for k, v in msg.raw_items() if k.lower() == lname]


def _raw(msg: Message, name: str) -> str | None:
    values = _raw_values(msg, name)
    return values[0] if values else None


# One plain address, optionally with a simple display name: by far the commonest form.
# getaddresses() (strict since CPython's CVE-2023-27043 fix) costs ~40 us a header; this
# regex handles the plain case exactly and leaves everything else to it.
_SIMPLE_ADDR = re.compile(
    r'^\s*(?:"([^"\\]*)"\s*|([^"<>,;:@()\[\]\\]*?)\s*)?<([^<>@\s",;:()]+@[^<>@\s",;:()]+)>\s*$'
    r'|^\s*([^<>@\s",;:()]+@[^<>@\s",;:()]+)\s*$'
)


def _addresses(msg: Message | dict[str, list[str]], *names: str) -> list[tuple[str, str]]:
    """Addresses in the named headers; ``msg`` may be a header index built by parse()."""
    values: list[str] = []
    for name in names:
        raw = msg.get(name.lower(), []) if isinstance(msg, dict) else _raw_values(msg, name)
        values.extend(_unsurrogate(v) for v in raw)
    if not values:
        return []
    if len(values) == 1:
        m = _SIMPLE_ADDR.match(values[0])
        if m:
            quoted, bare, addr, plain = m.groups()
            name = (quoted if quoted is not None else bare or "").strip()
            return [(decode_text(name) if name else "", normalize_address(addr or plain))]
    try:
        pairs = getaddresses(values)
    except Exception:  # noqa: BLE001 - a broken header is data, not a crash
        return []
    return [(decode_text(n), normalize_address(a)) for n, a in pairs if a and "@" in a]


def _message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    found = _MSGID.findall(value)
    if not found and value.strip() and " " not in value.strip():
        found = [value.strip()]  # some mailers omit the angle brackets
    return found


def normalize_message_id(value: str | None) -> str | None:
    ids = _message_ids(_unsurrogate(value) if value else None)
    return ids[0] if ids else None


# A conservative subset of valid addresses (ASCII dot-atom, LDH labels, alphabetic TLD
# that is not special-use): these need no full check. email-validator takes ~200 us
# per new address and decides everything else.
_PLAIN_ADDR = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"(?!(?:invalid|local|localhost|onion|arpa)$)[a-z]{2,63}$"
)


def _valid_address(addr: str) -> bool:
    if len(addr) <= 254 and len(addr.partition("@")[0]) <= 64 and _PLAIN_ADDR.match(addr):
        return True
    return _valid_address_full(addr)


@lru_cache(maxsize=65536)
def _valid_address_full(addr: str) -> bool:
    """Syntax only, no DNS. ``test_environment`` admits the ``.test`` names that
    test setups use; other special-use names (``.invalid``, ``.localhost``) stay out."""
    try:
        validate_email(addr, check_deliverability=False, test_environment=True)
    except EmailNotValidError:
        return False
    return True


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        d = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if d is None:
        return None
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def _payload_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return decode_bytes(payload, part.get_content_charset())


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except (LookupError, UnicodeError, ValueError, AssertionError):
        name = None
    return decode_text(name) if name else ""


def _is_attachment(part: Message) -> bool:
    disposition = (_raw(part, "Content-Disposition") or "").split(";")[0].strip().lower()
    if disposition == "attachment":
        return True
    ctype = part.get_content_type()
    if ctype in ("text/plain", "text/html"):
        return False
    return not ctype.startswith("multipart/")


def _report(msg: Message) -> DeliveryReport | None:
    """Pull the returned Message-ID and failed recipients out of a DSN."""
    original: str | None = None
    recipients: list[str] = []
    status = ""
    diagnostic = ""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            blocks = part.get_payload()
            if isinstance(blocks, list):
                for block in blocks:
                    rcpt = block.get("Final-Recipient") or block.get("Original-Recipient")
                    if rcpt:
                        recipients.append(normalize_address(str(rcpt).split(";")[-1]))
                    status = status or str(block.get("Status") or "").strip()
                    diagnostic = diagnostic or decode_text(block.get("Diagnostic-Code"))
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                original = normalize_message_id(_raw(inner[0], "Message-ID"))
            elif isinstance(inner, str):
                m = re.search(r"(?im)^message-id:\s*(<[^>]+>)", inner)
                original = normalize_message_id(m.group(1)) if m else None
    return DeliveryReport(original, tuple(dict.fromkeys(recipients)), status, diagnostic)


def dedupe_key(raw: bytes, message_id: str | None, sender: str, date: str, subject: str) -> str:
    """Same mail seen twice -> same key; a reused Message-ID with a new body -> new key.

    Headers added on the way (Received, Delivered-To) and line-ending changes are left
    out, so one mail delivered by two paths is still recognised as one.
    """
    sep = raw.find(b"\n\n")
    sep_crlf = raw.find(b"\r\n\r\n")
    if sep_crlf != -1 and (sep == -1 or sep_crlf < sep):
        body = raw[sep_crlf + 4 :]
    elif sep != -1:
        body = raw[sep + 2 :]
    else:
        body = b""
    h = hashlib.sha256()
    h.update(f"{message_id or ''}\0{sender}\0{date}\0{subject}\0".encode("utf-8", "replace"))
    h.update(body.replace(b"\r\n", b"\n"))
    return h.hexdigest()


def _structure(raw: bytes) -> Message:
    """compat32's structure, without feeding a single-part body through the parser.

    The feed parser walks the body line by line even when there are no parts to find;
    for a single-part message the payload is just the bytes after the blank line, which
    is what the parser would store. Multipart mail, and any header block the parser had
    to repair, take the full parser.
    """
    sep = raw.find(b"\n\n")
    sep_crlf = raw.find(b"\r\n\r\n")
    if sep_crlf != -1 and (sep == -1 or sep_crlf < sep):
        head, body = raw[: sep_crlf + 2], raw[sep_crlf + 4 :]
    elif sep != -1:
        head, body = raw[: sep + 1], raw[sep + 2 :]
    else:
        return message_from_bytes(raw, policy=compat32)
    msg = message_from_bytes(head, policy=compat32)
    if msg.defects or msg.get_content_maintype() in ("multipart", "message") or \
            msg.get_payload():
        return message_from_bytes(raw, policy=compat32)
    msg.set_payload(body.decode("ascii", "surrogateescape"))
    return msg


def parse(raw: bytes, *, html_to_text: bool = True, fast: bool = True) -> Incoming:
    """Parse one message; raise :class:`Unparseable` with a reason if it is not mail."""
    if not raw.strip():
        raise Unparseable("empty message")
    msg = _structure(raw) if fast else message_from_bytes(raw, policy=compat32)
    headers = tuple((k.lower(), v if isinstance(v, str) else str(v))
                    for k, v in msg.raw_items())
    if not headers:
        raise Unparseable("no header block: the data does not start with mail headers")
    index: dict[str, list[str]] = {}
    for k, v in headers:
        index.setdefault(k, []).append(v)
    names = index.keys()
    if not names & {"from", "sender", "return-path", "message-id", "subject", "date"}:
        raise Unparseable(
            "none of From, Sender, Message-ID, Subject or Date is present: not a mail message"
        )
    defects = [type(d).__name__ for d in msg.defects]

    def first(name: str) -> str | None:
        values = index.get(name)
        return values[0] if values else None

    senders = _addresses(index, "From") or _addresses(index, "Sender")
    from_name, from_addr = senders[0] if senders else ("", "")
    message_id = normalize_message_id(first("message-id"))
    subject = decode_text(first("subject"))
    date_raw = _unsurrogate(first("date") or "")

    text_parts: list[str] = []
    html_parts: list[str] = []
    attachments: list[AttachmentInfo] = []
    ctype = msg.get_content_type()
    for part in msg.walk():
        if part.is_multipart():
            defects.extend(type(d).__name__ for d in part.defects if part is not msg)
            continue
        pctype = part.get_content_type()
        if _is_attachment(part):
            if pctype in ("message/rfc822",):
                size = len(str(part.get_payload(0))) if part.get_payload() else 0
            else:
                payload = part.get_payload(decode=True)
                size = len(payload) if isinstance(payload, bytes) else 0
            attachments.append(AttachmentInfo(_filename(part), pctype, size))
        elif pctype == "text/html":
            html_parts.append(_payload_text(part))
        else:
            text_parts.append(_payload_text(part))

    html_only = not any(t.strip() for t in text_parts) and bool(html_parts)
    if html_only:
        text = "\n\n".join(_html_text(h) for h in html_parts) if html_to_text else ""
    else:
        text = "\n\n".join(t for t in text_parts if t)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")

    in_reply_to = normalize_message_id(first("in-reply-to"))
    refs = tuple(_message_ids(_unsurrogate(first("references") or "")))
    report = _report(msg) if ctype == "multipart/report" else None
    return Incoming(
        raw=raw,
        dedupe_key=dedupe_key(raw, message_id, from_addr, date_raw, subject),
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=refs,
        from_addr=from_addr,
        from_name=from_name,
        from_valid=bool(from_addr) and _valid_address(from_addr),
        to=tuple(a for _, a in _addresses(index, "To")),
        cc=tuple(a for _, a in _addresses(index, "Cc")),
        delivered_to=tuple(
            a for _, a in _addresses(index, "Delivered-To", "X-Original-To", "Envelope-To")
        ),
        reply_to=tuple(a for _, a in _addresses(index, "Reply-To")),
        subject=subject,
        date=_date(date_raw),
        text=text,
        new_text=split_reply(text).new,
        html_only=html_only,
        attachments=tuple(attachments),
        content_type=ctype,
        report=report,
        defects=tuple(dict.fromkeys(defects)),
        _headers=headers,
    )


def _html_text(html: str) -> str:
    # Imported here: only HTML-only mail pays for it.
    from inscriptis import get_text

    try:
        return get_text(html).strip()
    except Exception:  # noqa: BLE001 - a hostile HTML part must not stop ingest
        return re.sub(r"<[^>]+>", " ", html)
