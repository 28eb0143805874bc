"""A ticket's history as the SLA clocks see it: small frozen facts with their time.

The store turns its event trail into these (``slaclock.ticket_clocks`` reads nothing
else), so the clocks are pure and can be tested with fixed datetimes. Kept apart from
the clock logic so that the store can build them without importing policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WAITING = "waiting-on-customer"
RESOLVED = "resolved"


@dataclass(frozen=True)
class Opened:
    at: datetime
    severity: int
    category: str
    owner: str
    customer: str  # the customer's address, for policies narrowed by a customer list


@dataclass(frozen=True)
class SeverityChanged:
    at: datetime
    severity: int


@dataclass(frozen=True)
class CategoryChanged:
    at: datetime
    category: str


@dataclass(frozen=True)
class OwnerChanged:
    at: datetime
    owner: str


@dataclass(frozen=True)
class StatusChanged:
    """``open``, ``in-progress``, ``waiting-on-customer`` or ``resolved``."""

    at: datetime
    status: str


@dataclass(frozen=True)
class CustomerWrote:
    """Ends a wait on the customer (whatever the status says); does not reopen."""

    at: datetime


@dataclass(frozen=True)
class Responded:
    """A mail to the customer from the front line or a tier group (not an ack)."""

    at: datetime


@dataclass(frozen=True)
class Referred:
    """The ticket went to ``group``; ownership follows the referral."""

    at: datetime
    group: str


@dataclass(frozen=True)
class Accepted:
    at: datetime
    group: str


@dataclass(frozen=True)
class Snoozed:
    """``#snooze 1d reason``: no automatic escalation until ``until``."""

    at: datetime
    until: datetime
    reason: str = ""


Fact = (Opened | SeverityChanged | CategoryChanged | OwnerChanged | StatusChanged
        | CustomerWrote | Responded | Referred | Accepted | Snoozed)
Span = tuple[datetime, datetime | None]  # end None: still going
