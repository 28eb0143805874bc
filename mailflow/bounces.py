"""Bounces: what a delivery failure report says about the mail it returns.

RFC 3464 reports (``multipart/report``) are read field by field. Most real bounces are
not RFC 3464 (issue 10, item 8): "Mail Delivery Subsystem", "Returned mail", Exchange,
Lotus, qmail... ``flufl.bounce`` (GNU Mailman's detectors for dozens of formats) finds
the failed recipients in those. A bounce is also told by who sends it (a null return
path, MAILER-DAEMON, postmaster) together with a bounce subject, or with a quoted
original that carries one of our Message-IDs. Whatever is recognised gets a
:class:`DeliveryReport`, so linking treats it as a bounce and it is never answered.

The flufl.bounce detectors cost a few hundred microseconds a message, so they run only
on mail with a cheap sign of being automatic (sender, return path, subject).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import Message
from typing import cast

from mailflow.addresses import normalize_address
from mailflow.decoding import decode_text
from mailflow.msgid import message_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryReport:
    """What a bounce tells about the message it returns."""

    original_message_id: str | None
    recipients: tuple[str, ...]
    status: str  # RFC 3463 status ("5.1.1"); "5.0.0"/"4.0.0" when only the class is known
    diagnostic: str


# Senders that only ever send automatic delivery reports.
_BOUNCE_SENDER = re.compile(
    r"^(mailer-daemon|postmaster|mail-daemon|maildaemon|mailer|mmdf|smtp-gateway|"
    r"exchangeadmin|lotus[._-]?notes|notes[._-]?admin|double-bounce|bounces?)(@|$)",
    re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|not delivered|could not be delivered|delivery fail|"
    r"delivery status notification|delivery notification|failure notice|returned mail|"
    r"returned to sender|mail delivery (failed|problem|system|subsystem)|"
    r"non[- ]?deliver|nondeliverable|delivery problem|delivery error|error during delivery|"
    r"mail system error|message not deliverable|bounce|"
    r"warning: could not send|delayed mail|delivery (has been )?delayed|"
    r"unable to deliver|permanent error|mail failure|failed mail|\bmail error\b|"
    r"error (sending|delivering)",
    re.IGNORECASE)
_ROBOT_NAME = re.compile(r"mailer-daemon|postmaster|mail delivery (sub)?system", re.IGNORECASE)
# A person replying to or forwarding something ("Re:", "Fwd:", "AW:", "WG:"...).
_PERSONAL = re.compile(r"^\s*(re|aw|sv|fwd?|wg|tr|rv|i|enc|doorst|vs|vb)\s*:", re.IGNORECASE)
# Our Message-IDs (mailflow.linking.message_id_for): mf.<ticket>.<token>.<nonce>@domain.
_OUR_ID = re.compile(r"mf\.[1-9]\d*\.[a-z2-9]{12}\.[A-Za-z0-9]+@[A-Za-z0-9.-]+[A-Za-z0-9]")
_QUOTED_ID = re.compile(r"(?im)^[ \t>]*message-id:[ \t]*(<[^<>\r\n]+>)")
_STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def delivery_report(msg: Message, *, from_addr: str, from_text: str,
                    return_path: str | None, subject: str, text: str) -> DeliveryReport | None:
    """The report this message is, or None when it is not a bounce."""
    if msg.get_content_type() == "multipart/report":
        return dsn_report(msg)
    null_path = return_path is not None and return_path.strip() in ("<>", "")
    robot = _robot(from_addr, from_text, return_path)
    bounce_subject = bool(_BOUNCE_SUBJECT.search(subject))
    if not (null_path or robot or bounce_subject):
        return None
    temporary, permanent = _flufl(msg)
    ours = _OUR_ID.search(text)
    original = ours.group(0) if ours else _quoted_original(msg, text)
    found = bool(temporary or permanent or ours)
    # Two signs together: from a bounce sender and a bounce's content, or a bounce
    # subject and content. A person forwarding a bounce to ask us about it ("Fwd:
    # Undeliverable") or answering one is a customer with a question, not a bounce.
    if not (((null_path or robot) and (found or bounce_subject)) or
            (bounce_subject and found and not _PERSONAL.match(subject))):
        return None
    status = ""
    code = _STATUS.search(text)
    if permanent:
        status = ".".join(code.groups()) if code and code.group(1) == "5" else "5.0.0"
    elif temporary:
        status = ".".join(code.groups()) if code and code.group(1) == "4" else "4.0.0"
    elif code:
        status = ".".join(code.groups())
    recipients = tuple(dict.fromkeys(normalize_address(r) for r in (*permanent, *temporary)
                                     if "@" in r))
    return DeliveryReport(original, recipients, status, _diagnostic(text, recipients))


def _robot(from_addr: str, from_text: str, return_path: str | None) -> bool:
    """Sent by a mail system rather than a person; ``from_text`` is the whole decoded
    From value, since ``MAILER-DAEMON <>`` has a name and no address."""
    rp = (return_path or "").strip().strip("<>")
    return bool(_BOUNCE_SENDER.match(from_addr) or _ROBOT_NAME.search(from_text)
                or _BOUNCE_SENDER.match(rp))


def _flufl(msg: Message) -> tuple[list[str], list[str]]:
    """(temporary, permanent) failed recipients by flufl.bounce's detectors."""
    try:
        from flufl.bounce import all_failures
    except ImportError:  # an install without it still knows the other signs
        return [], []
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on odd mail is not our failure
        log.debug("flufl.bounce failed on a message", exc_info=True)
        return [], []
    return _texts(temporary), _texts(permanent)


def _texts(found: object) -> list[str]:
    out = []
    for r in found or ():  # type: ignore[attr-defined]
        value = r.decode("utf-8", "replace") if isinstance(r, bytes) else str(r)
        value = decode_text(value)
        if value:
            out.append(value)
    return sorted(out)


def _quoted_original(msg: Message, text: str) -> str | None:
    """The Message-ID of the returned mail: an attached original, or a quoted header."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                # A message/* part's payload is a list of Message objects.
                ids = message_ids(str(cast(Message, inner[0]).get("Message-ID") or ""))
                if ids:
                    return ids[0]
        elif ctype == "text/rfc822-headers":
            m = _QUOTED_ID.search(str(part.get_payload() or ""))
            if m and message_ids(m.group(1)):
                return message_ids(m.group(1))[0]
    m = _QUOTED_ID.search(text)
    if m:
        ids = message_ids(m.group(1))
        return ids[0] if ids else None
    return None


def _diagnostic(text: str, recipients: tuple[str, ...]) -> str:
    """One line that says why: the first naming a recipient or an SMTP error code."""
    for line in text.splitlines():
        s = line.strip()
        low = s.lower()
        if any(r in low for r in recipients) or re.search(r"\b[45]\d\d\b", s):
            return decode_text(s)[:300]
    return ""


def dsn_report(msg: Message) -> DeliveryReport:
    """Pull the returned Message-ID and failed recipients out of an RFC 3464 DSN."""
    original: str | None = None
    recipients: list[str] = []
    status = ""
    diagnostic = ""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            blocks = part.get_payload()
            if isinstance(blocks, list):
                for block in cast(list[Message], blocks):
                    rcpt = block.get("Final-Recipient") or block.get("Original-Recipient")
                    if rcpt:
                        recipients.append(normalize_address(decode_text(
                            str(rcpt).split(";")[-1])))
                    status = status or decode_text(block.get("Status"))
                    diagnostic = diagnostic or decode_text(block.get("Diagnostic-Code"))
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                ids = message_ids(_raw_header(cast(Message, inner[0]), "Message-ID"))
                original = ids[0] if ids else None
            elif isinstance(inner, str):
                m = re.search(r"(?im)^message-id:\s*(<[^>]+>)", inner)
                ids = message_ids(m.group(1)) if m else []
                original = ids[0] if ids else None
    return DeliveryReport(original, tuple(dict.fromkeys(recipients)), status, diagnostic)


def _raw_header(msg: Message, name: str) -> str:
    for k, v in msg.raw_items():
        if k.lower() == name.lower():
            return v if isinstance(v, str) else str(v)
    return ""
