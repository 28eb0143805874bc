"""Ticket vocabulary shared by every stage: statuses, event kinds, outbox kinds, references.

Events are the audit trail and the raw material of the SLA clocks and the digest, so
their kinds are a closed set named here rather than strings scattered across modules.
The package holds the one way ticket state changes: :mod:`.effects` names the changes
as data, :mod:`.decide` turns an incoming message into them (pure), and :mod:`.apply`
is the only code that writes tickets, events, outbox rows and suppressions.
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
    OWNER_CHANGED = "owner-changed"
    MAIL_QUEUED = "mail-queued"
    NOTE = "note"
    QUARANTINED = "quarantined"
    # An escalation step fired: data {step, chain, clock, episode, actions, late,
    # age_seconds, reason}. The digest counts escalations, early ones and by reason.
    ESCALATED = "escalated"
    # A customer (or person) asked for escalation while no service level was breached.
    ESCALATION_REQUESTED = "escalation-requested"
    # Staff answered the customer from their own mail client (the shared mailbox's Sent
    # folder): a response for the SLA clocks; mailflow sent nothing.
    STAFF_ANSWER = "staff-answer"


class Writer(StrEnum):
    """Who wrote a message into a ticket: decides what the message may change."""

    CUSTOMER = "customer"  # the requester or a participant on the customer's side
    FRONTLINE = "frontline"  # help-desk staff
    TIER = "tier"  # a member of a tier group
    UNKNOWN = "unknown"


class OutboxKind(StrEnum):
    """What a queued mail is: decides suppression, SLA meaning and the digest's counts."""

    ACKNOWLEDGMENT = "acknowledgment"
    STATUS_UPDATE = "status-update"  # to the customer, by a person: relayed, accepted, resolved
    CUSTOMER_NOTICE = "customer-notice"  # to the customer, automatic: escalated, referred by rule
    REFERRAL = "referral"  # to a tier group
    RELAY = "relay"  # a customer's message forwarded to the group that owns the ticket
    TRANSCRIPT = "command-transcript"  # what a mail command did, to its sender
    NOTICE = "notice"  # to staff, leaders, managers: reminders, escalations, alerts
    DIGEST = "digest"


# Mail to customers stops after a permanent failure (suppression); mail to tier groups
# and staff is not ours to suppress that way.
CUSTOMER_KINDS = frozenset({OutboxKind.ACKNOWLEDGMENT, OutboxKind.STATUS_UPDATE,
                            OutboxKind.CUSTOMER_NOTICE})
# A mail of these kinds that reached the customer is a *response* for the SLA clocks;
# an acknowledgment is not, nor is an automatic notice (an escalation update must not
# stop the clock it escalates).
RESPONSE_KINDS = frozenset({OutboxKind.STATUS_UPDATE})


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DROPPED = "dropped"


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
