"""Hand-made test mail."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

_N = [0]


def mail(
    sender: str = "Customer <customer@example.test>",
    subject: str = "Printer broken",
    body: str = "Hello,\n\nthe printer is broken.\n\nThanks",
    to: str = "support@example.test",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    html: str | None = None,
) -> bytes:
    _N[0] += 1
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = "Mon, 05 Jan 2026 09:00:00 +0000"
    m["Message-ID"] = message_id or make_msgid(idstring=str(_N[0]), domain="customer.test")
    for k, v in (headers or {}).items():
        m[k] = v
    if body is not None:
        m.set_content(body)
    if html is not None:
        if body is None:
            m.set_content(html, subtype="html")
        else:
            m.add_alternative(html, subtype="html")
    return m.as_bytes()


def reply_to(original: bytes, sender: str, body: str, subject: str | None = None,
             to: str | None = None) -> bytes:
    """A reply that threads to ``original`` (In-Reply-To and References)."""
    from email import message_from_bytes
    from email.policy import default

    o = message_from_bytes(original, policy=default)
    headers = {"In-Reply-To": str(o["Message-ID"]), "References": str(o["Message-ID"])}
    return mail(sender=sender, subject=subject or f"Re: {o['Subject']}", body=body,
                to=to or str(o.get("Reply-To") or o["From"]), headers=headers)
