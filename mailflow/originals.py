"""The customer's original messages, attached to mail for a tier group as message/rfc822.

A referral (and a relayed customer reply) carries the customer's mail byte for byte,
so nothing is lost on the way to the group: headers, attachments, HTML. The bytes
travel in the outbox row's context as base64 (``attach_raw``, put there by
:mod:`mailflow.tickets.apply`) because the renderer runs in a worker process without
a database. Pure email work.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default


def attach_originals(msg: EmailMessage, originals: Iterable[str]) -> None:
    """Attach each base64-encoded raw message to ``msg`` (which becomes
    multipart/mixed); one that does not decode is attached as plain bytes."""
    for n, b64 in enumerate(originals, 1):
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError, TypeError):
            continue
        name = f"original-{n}.eml"
        try:
            inner = message_from_bytes(raw, policy=default)
            assert isinstance(inner, EmailMessage)
            msg.add_attachment(inner, filename=name)
        except Exception:  # noqa: BLE001 - a message the email package cannot carry as is
            msg.add_attachment(raw, maintype="application", subtype="octet-stream",
                               filename=name)
