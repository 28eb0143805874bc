"""A ticket's event trail as the facts the SLA clocks read: pure.

The clocks (:mod:`mailflow.slaclock`) know nothing of the database; the event trail is
the single record of what happened. This is the one translation between the two, so
that ``sla explain``, the scheduler and the digest agree on what counted: a mail
*sent* to the customer of a response kind is a response (an acknowledgment is not, and
neither is mail merely queued), a customer message ends a wait, a referral starts the
group's time to accept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from mailflow.slaclock import (
    RESOLVED,
    WAITING,
    Accepted,
    CustomerWrote,
    Fact,
    Opened,
    OwnerChanged,
    Referred,
    Responded,
    SeverityChanged,
    Snoozed,
    StatusChanged,
)
from mailflow.tickets import RESPONSE_KINDS, EventKind, Status


@dataclass(frozen=True)
class EventRow:
    kind: str
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


_STATUS = {str(Status.WAITING): WAITING, str(Status.RESOLVED): RESOLVED,
           str(Status.CLOSED): RESOLVED, "waiting-on-customer": WAITING,
           "in-progress": "open"}


def facts_of(events: Iterable[EventRow], requester: str,
             outbox_kinds: Mapping[int, str]) -> list[Fact]:
    """``outbox_kinds``: the kind of each outbox row a ``mail-sent`` event names."""
    out: list[Fact] = []
    for e in events:
        d = e.data or {}
        match e.kind:
            case EventKind.OPENED:
                out.append(Opened(e.at, int(d.get("severity", 3)), str(d.get("category", "")),
                                  str(d.get("owner_group") or "frontline"), requester))
            case EventKind.SEVERITY_RAISED:
                out.append(SeverityChanged(e.at, int(d["severity"])))
            case EventKind.STATUS_CHANGED:
                status = str(d.get("status", ""))
                out.append(StatusChanged(e.at, _STATUS.get(status, "open")))
            case EventKind.REOPENED:
                out.append(StatusChanged(e.at, "open"))
            case EventKind.OWNER_CHANGED:
                out.append(OwnerChanged(e.at, str(d.get("owner_group") or "frontline")))
            case EventKind.CUSTOMER_MESSAGE:
                out.append(CustomerWrote(e.at))
            case EventKind.STAFF_ANSWER:
                out.append(Responded(e.at))
            case EventKind.MAIL_SENT:
                oid = d.get("outbox_id")
                if oid is not None and outbox_kinds.get(int(oid)) in RESPONSE_KINDS:
                    out.append(Responded(e.at))
            case EventKind.NOTE:
                what = d.get("what")
                if what == "referred":
                    out.append(Referred(e.at, str(d.get("group"))))
                elif what == "accepted":
                    out.append(Accepted(e.at, str(d.get("group"))))
                elif what == "snoozed" and d.get("until"):
                    out.append(Snoozed(e.at, datetime.fromisoformat(str(d["until"])),
                                       str(d.get("reason", ""))))
    return _opened_first(out)


def _opened_first(facts: list[Fact]) -> list[Fact]:
    """Nothing happens to a ticket before it was opened. A ticket is opened at the
    mail's arrival (the server's INTERNALDATE, whole seconds) while what mailflow did
    about it is stamped with its own clock; a skewed server clock must not put our
    response before the request."""
    opened = next((f for f in facts if isinstance(f, Opened)), None)
    if opened is None:
        return facts
    rest = [f if f.at >= opened.at else replace(f, at=opened.at)
            for f in facts if f is not opened]
    return [opened, *rest]


# The event kinds the clocks read: the scheduler loads only these.
CLOCK_EVENTS = tuple(str(k) for k in (
    EventKind.OPENED, EventKind.SEVERITY_RAISED, EventKind.STATUS_CHANGED,
    EventKind.REOPENED, EventKind.OWNER_CHANGED, EventKind.CUSTOMER_MESSAGE,
    EventKind.MAIL_SENT, EventKind.NOTE, EventKind.STAFF_ANSWER))
