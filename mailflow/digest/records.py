"""What the digest is computed from, as frozen data: tickets with their times, clocks,
referrals and the state of the mail pipeline.

A :class:`TicketRecord` is a ticket's history reduced to the moments the support field
measures (customer wrote, we responded, resolved, reopened, waited on the customer,
referred, escalated, rated). Tests build them by hand; :mod:`.queries` builds them for
the tickets touched on the day only, and computes the 7- and 30-day figures in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

OPEN = ("open", "referred", "waiting")


@dataclass(frozen=True)
class Window:
    """A half-open span of time ``[start, end)``: the day, or the 7/30 days before it."""

    start: datetime
    end: datetime

    def has(self, t: datetime | None) -> bool:
        return t is not None and self.start <= t < self.end

    @property
    def days(self) -> float:
        """Length in days (23 or 25 hours on a DST day count as one day)."""
        return max(1.0, round((self.end - self.start).total_seconds() / 86400))


def day_window(day: date, tz: ZoneInfo) -> Window:
    """Local midnight to local midnight, in UTC: a DST day is 23 or 25 hours long."""
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return Window(start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC")))


def days_before(day: date, n: int, tz: ZoneInfo) -> Window:
    """The ``n`` whole local days before ``day`` (the comparison windows)."""
    return Window(day_window(day - timedelta(days=n), tz).start, day_window(day, tz).start)


@dataclass(frozen=True)
class Escalation:
    """One ``escalated`` event: the step that fired, why, and the ticket's age then."""

    at: datetime
    step: str
    reason: str
    age: timedelta
    late: bool = False


@dataclass(frozen=True)
class TicketRecord:
    """One ticket's history as the digest reads it (every tuple in time order)."""

    id: int
    created_at: datetime
    requester: str = "customer@example.test"
    severity: int = 3
    category: str = "technical"
    owner_group: str | None = None
    status: str = "open"
    rules: tuple[str, ...] = ()  # the rules that matched when it was opened
    customer_messages: tuple[datetime, ...] = ()  # follow-ups, not the opening mail
    responses: tuple[datetime, ...] = ()  # mail to the customer that counts as a response
    resolutions: tuple[datetime, ...] = ()
    reopens: tuple[datetime, ...] = ()
    waits: tuple[tuple[datetime, datetime | None], ...] = ()  # waiting on the customer
    referrals: tuple[datetime, ...] = ()
    escalations: tuple[Escalation, ...] = ()
    escalation_requests: tuple[datetime, ...] = ()
    ratings: tuple[tuple[datetime, int], ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


@dataclass(frozen=True)
class EscalationRow:
    """An escalation or a customer's escalation request, with what it is grouped by."""

    ticket: int
    requester: str
    category: str
    at: datetime
    requested: bool = False  # a customer asked; no level was breached
    step: str = ""
    reason: str = ""
    age: timedelta | None = None
    rules: tuple[str, ...] = ()


def escalation_rows(tickets: tuple[TicketRecord, ...] | list[TicketRecord]
                    ) -> list[EscalationRow]:
    """The escalation rows of hand-built histories (SQL selects the same from events)."""
    rows = [EscalationRow(t.id, t.requester, t.category, e.at, False, e.step, e.reason,
                          e.age, t.rules) for t in tickets for e in t.escalations]
    rows += [EscalationRow(t.id, t.requester, t.category, at, True, rules=t.rules)
             for t in tickets for at in t.escalation_requests]
    return sorted(rows, key=lambda r: (r.at, r.ticket))


@dataclass(frozen=True)
class ClockRecord:
    """A ``ticket_clocks`` row: one service-level clock of one ticket and episode."""

    ticket: int
    kind: str  # first_response | next_update | resolution | tier_accept
    severity: int
    owner_group: str | None
    started_at: datetime
    due_at: datetime | None
    stopped_at: datetime | None
    state: str  # running | paused | met | breached
    episode: int = 1


@dataclass(frozen=True)
class ReferralRecord:
    """A referral to a tier group (the ``referrals`` table) with the ticket's severity."""

    ticket: int
    group: str
    severity: int
    created_at: datetime
    accepted_at: datetime | None = None
    eta: datetime | None = None
    next_update_due: datetime | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class MailboxRecord:
    name: str
    updated_at: datetime  # the last commit of mail taken in from this folder


@dataclass(frozen=True)
class MailHealth:
    """The mail pipeline at the time of the digest, and what went wrong on the day."""

    quarantined: int = 0  # on the day
    quarantine_waiting: int = 0  # not released, in all
    failed: int = 0  # deliveries that failed for good on the day
    outbox_pending: int = 0  # waiting or retrying now
    oldest_pending: datetime | None = None
    mailboxes: tuple[MailboxRecord, ...] = field(default_factory=tuple)
