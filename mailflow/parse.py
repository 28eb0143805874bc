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
from email.message import Message
from email.policy import compat32
from email.utils import parsedate_to_datetime

from mailflow.addresses import _valid_address_full, normalize_address, parse_addresses
from mailflow.addresses import valid_address as _valid_address
from mailflow.bounces import DeliveryReport, delivery_report
from mailflow.decoding import _unsurrogate, decode_bytes, decode_text
from mailflow.msgid import message_ids
from mailflow.quoting import split_reply

__all__ = ["AttachmentInfo", "DeliveryReport", "Incoming", "Unparseable", "_valid_address",
           "_valid_address_full", "decode_bytes", "decode_text", "normalize_address",
           "normalize_message_id", "parse"]


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int


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


def _raw_values(msg: Message, name: str) -> list[str]:
    """Header values as raw text: compat32's ``get()`` would turn raw 8-bit bytes into
    an unknown-8bit Header and lose them."""
    lname = name.lower()
    return [v if isinstance(v, str) else str(v) for k, v in msg.raw_items() if k.lower() == lname]


def _raw(msg: Message, name: str) -> str | None:
    values = _raw_values(msg, name)
    return values[0] if values else None


def _addresses(msg: Message | dict[str, list[str]], *names: str) -> list[tuple[str, str]]:
    """Addresses in the named headers; ``msg`` may be a header index built by parse()."""
    values: list[str] = []
    for name in names:
        raw = msg.get(name.lower(), []) if isinstance(msg, dict) else _raw_values(msg, name)
        values.extend(_unsurrogate(v) for v in raw)
    if not values:
        return []
    return [(decode_text(n) if n else "", normalize_address(a))
            for n, a in parse_addresses(values)]


def normalize_message_id(value: str | None) -> str | None:
    """The first valid id in the value (see :mod:`mailflow.msgid`), else None."""
    ids = message_ids(_unsurrogate(value) if value else None)
    return ids[0] if ids else None


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
    ctype = msg.get_content_type().replace("\x00", "")
    for part in msg.walk():
        if part.is_multipart():
            defects.extend(type(d).__name__ for d in part.defects if part is not msg)
            continue
        pctype = part.get_content_type().replace("\x00", "")
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
    refs = tuple(message_ids(_unsurrogate(first("references") or "")))
    report = delivery_report(msg, from_addr=from_addr, from_text=decode_text(first("from")),
                             return_path=first("return-path"), subject=subject, text=text)
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
