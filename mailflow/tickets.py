"""Ticket vocabulary shared by every stage: statuses, event kinds, references.

Events are the audit trail and the raw material of the SLA clocks and the digest, so
their kinds are a closed set named here rather than strings scattered across modules.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OPEN = "open"
    REFERRED = "referred"  # with a tier group (referrals issue)
    WAITING = "waiting"  # on the customer: SLA clocks pause
    RESOLVED = "resolved"
    CLOSED = "closed"


OPEN_STATUSES = (Status.OPEN, Status.REFERRED, Status.WAITING)


class EventKind(StrEnum):
    OPENED = "opened"
    LINKED = "linked"  # opened as a follow-up of / in place of another ticket
    CUSTOMER_MESSAGE = "customer-message"
    REOPENED = "reopened"
    SEVERITY_RAISED = "severity-raised"
    ACK_QUEUED = "ack-queued"
    ACK_SKIPPED = "ack-skipped"
    MAIL_SENT = "mail-sent"
    DELIVERY_FAILED = "delivery-failed"
    OWN_MAIL = "own-mail-returned"
    ATTACHMENT_TOO_LARGE = "attachment-too-large"
    INVALID_SENDER = "invalid-sender"
    STATUS_CHANGED = "status-changed"


SYSTEM = "mailflow"


def ref(prefix: str, ticket_id: int) -> str:
    return f"{prefix}-{ticket_id}"


def parse_ref(text: str, prefix: str) -> int | None:
    """``SUP-12`` or ``12`` -> 12, for the CLI."""
    t = text.strip().upper()
    if t.startswith(prefix.upper() + "-"):
        t = t[len(prefix) + 1 :]
    return int(t) if t.isdigit() else None


def event(ticket_id: int, kind: EventKind, at: datetime, actor: str = SYSTEM,
          summary: str = "", **data: Any) -> dict[str, Any]:
    """A row for ``ticket_events``; the store inserts these in bulk."""
    return {"ticket_id": ticket_id, "kind": str(kind), "at": at, "actor": actor,
            "summary": summary, "data": data}
