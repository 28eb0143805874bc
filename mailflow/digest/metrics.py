"""The digest's figures, computed from frozen records: pure, and tested by hand.

Each function answers one question a support manager asks in the morning (how much
came in, how fast we answered, how much we solved at first contact, who escalated and
why, how the tier groups kept their promises). Definitions follow the support field's
usage and are spelled out in docs/digest.md; where a choice was made it is said here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailflow.digest.records import (
    ClockRecord,
    EscalationRow,
    TicketRecord,
    Window,
)

AGE_BANDS: tuple[tuple[str, timedelta | None], ...] = (
    ("under 1 day", timedelta(days=1)), ("1-3 days", timedelta(days=3)),
    ("3-7 days", timedelta(days=7)), ("7-30 days", timedelta(days=30)),
    ("over 30 days", None))


@dataclass(frozen=True)
class Counts:
    """What happened in one window; the 7/30-day ones come from SQL with the same
    definitions (:mod:`.queries`), so the day compares like with like."""

    opened: int = 0
    customer_messages: int = 0  # opening mails and follow-ups
    responses: int = 0
    handled: int = 0  # tickets with a response or a resolution
    resolved: int = 0  # tickets with a resolution
    # First-contact resolution, on the window's new tickets: those resolved since, and
    # of those the ones never referred and not reopened within the FCR window.
    first_resolved: int = 0
    first_contact: int = 0
    reopened: int = 0  # tickets
    reopens: int = 0  # events (a ticket reopened twice counts twice here)
    escalated: int = 0  # tickets
    escalations: int = 0  # steps fired
    early_escalations: int = 0
    escalation_requests: int = 0
    ratings: int = 0
    rating_sum: int = 0
    clocks_met: int = 0
    clocks_breached: int = 0

    @property
    def resolution_rate(self) -> float | None:
        return _ratio(self.resolved, self.opened)

    @property
    def reopen_rate(self) -> float | None:
        return _ratio(self.reopened, self.resolved)

    @property
    def fcr_rate(self) -> float | None:
        return _ratio(self.first_contact, self.first_resolved)

    @property
    def escalation_ratio(self) -> float | None:
        return _ratio(self.escalated, self.opened)

    @property
    def sla_compliance(self) -> float | None:
        return _ratio(self.clocks_met, self.clocks_met + self.clocks_breached)

    @property
    def rating_average(self) -> float | None:
        return None if not self.ratings else self.rating_sum / self.ratings


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else a / b


def counts(tickets: Iterable[TicketRecord], w: Window, fcr_window: timedelta,
           early: timedelta, clocks: Iterable[ClockRecord] = ()) -> Counts:
    """The window's counts from ticket histories (the reference :mod:`.queries` meets)."""
    c = Counter[str]()
    for t in tickets:
        opened = w.has(t.created_at)
        c["opened"] += opened
        c["customer_messages"] += opened + sum(map(w.has, t.customer_messages))
        responded = sum(map(w.has, t.responses))
        c["responses"] += responded
        resolved = any(map(w.has, t.resolutions))
        c["handled"] += bool(responded) or resolved
        c["resolved"] += resolved
        if opened and t.resolutions:
            c["first_resolved"] += 1
            c["first_contact"] += first_contact(t, fcr_window)
        reopens = sum(map(w.has, t.reopens))
        c["reopens"] += reopens
        c["reopened"] += reopens > 0
        esc = [e for e in t.escalations if w.has(e.at)]
        c["escalations"] += len(esc)
        c["escalated"] += bool(esc)
        c["early_escalations"] += sum(e.age < early for e in esc)
        c["escalation_requests"] += sum(map(w.has, t.escalation_requests))
        rated = [v for at, v in t.ratings if w.has(at)]
        c["ratings"] += len(rated)
        c["rating_sum"] += sum(rated)
    for k in clocks:
        c["clocks_met"] += k.state == "met" and w.has(k.stopped_at)
        c["clocks_breached"] += k.state == "breached" and w.has(k.due_at)
    return Counts(**c)


def sum_counts(days: Iterable[Counts]) -> Counts:
    """A window as the sum of its days (figures per day are means of daily figures)."""
    total = Counter[str]()
    for c in days:
        for k in Counts.__dataclass_fields__:
            total[k] += getattr(c, k)
    return Counts(**total)


def first_contact(t: TicketRecord, window: timedelta) -> bool:
    """Resolved by the front line: never referred, and not reopened in the ``window``
    after its first resolution (the support field's 5-10 days; a later reopen is a new
    problem more often than the old one back)."""
    first = t.resolutions[0]
    return not t.referrals and not any(first < r <= first + window for r in t.reopens)


@dataclass(frozen=True)
class Spread:
    """A distribution of durations: how many, mean, median and 90th percentile."""

    count: int = 0
    mean: timedelta | None = None
    median: timedelta | None = None
    p90: timedelta | None = None


def spread(durations: Iterable[timedelta]) -> Spread:
    """Median is the middle value (mean of the two middle ones for an even count); the
    90th percentile is the nearest rank: the value 90 % of the sample is at or under."""
    xs = sorted(durations)
    n = len(xs)
    if not n:
        return Spread()
    mid = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    return Spread(n, sum(xs, timedelta()) / n, mid, xs[math.ceil(0.9 * n) - 1])


@dataclass(frozen=True)
class FirstResponse:
    spread: Spread
    within: int  # answered within their severity's promised first response
    share: float | None


def first_response(tickets: Iterable[TicketRecord], w: Window,
                   targets: Mapping[int, timedelta]) -> FirstResponse:
    """Tickets whose first response went out in the window: time from opening, and how
    many within the first response their acknowledgment promised (wall-clock time;
    business-hours clocks are in the service-level section)."""
    waits: list[timedelta] = []
    within = 0
    for t in tickets:
        if t.responses and w.has(t.responses[0]):
            d = t.responses[0] - t.created_at
            waits.append(d)
            target = targets.get(t.severity)
            within += target is not None and d <= target
    return FirstResponse(spread(waits), within, _ratio(within, len(waits)))


def follow_up_waits(t: TicketRecord, w: Window) -> list[timedelta]:
    """Reply speed on follow-ups: for each response in the window after the first, the
    wait since the earliest customer message it answered (none: a second update we
    sent unasked is not a reply)."""
    out = []
    for prev, resp in zip(t.responses, t.responses[1:], strict=False):
        if not w.has(resp):
            continue
        asked = [m for m in t.customer_messages if prev < m <= resp]
        if asked:
            out.append(resp - asked[0])
    return out


def reply_speed(tickets: Iterable[TicketRecord], w: Window) -> Spread:
    return spread(d for t in tickets for d in follow_up_waits(t, w))


def waited(t: TicketRecord, start: datetime, end: datetime) -> timedelta:
    """Time within ``[start, end]`` the ticket waited on the customer (an open wait runs
    to ``end``): clocks stop then, so resolution time leaves it out."""
    total = timedelta()
    for a, b in t.waits:
        lo, hi = max(a, start), min(b or end, end)
        if hi > lo:
            total += hi - lo
    return total


def resolution_times(t: TicketRecord, w: Window) -> list[timedelta]:
    """Each resolution in the window, timed from the start of its episode (opening, or
    the reopen before it) less the time spent waiting on the customer."""
    out = []
    for r in t.resolutions:
        if w.has(r):
            start = max([t.created_at, *(x for x in t.reopens if x <= r)])
            out.append(r - start - waited(t, start, r))
    return out


def resolution(tickets: Iterable[TicketRecord], w: Window) -> Spread:
    return spread(d for t in tickets for d in resolution_times(t, w))


@dataclass(frozen=True)
class Backlog:
    """Open tickets by age band and severity, and the oldest by number."""

    total: int
    bands: Mapping[str, Mapping[int, int]]  # band -> severity -> count
    oldest: tuple[tuple[int, datetime, int, str | None], ...]  # id, opened, severity, owner


def age_band(age: timedelta) -> str:
    for name, limit in AGE_BANDS:
        if limit is None or age < limit:
            return name
    return AGE_BANDS[-1][0]  # pragma: no cover


def backlog(tickets: Iterable[TicketRecord], as_of: datetime, oldest: int = 5) -> Backlog:
    opened = sorted((t for t in tickets if t.is_open and t.created_at < as_of),
                    key=lambda t: (t.created_at, t.id))
    bands: dict[str, dict[int, int]] = {name: {} for name, _ in AGE_BANDS}
    for t in opened:
        b = bands[age_band(as_of - t.created_at)]
        b[t.severity] = b.get(t.severity, 0) + 1
    return Backlog(len(opened), bands, tuple(
        (t.id, t.created_at, t.severity, t.owner_group) for t in opened[:oldest]))


@dataclass(frozen=True)
class Escalations:
    count: int
    tickets: int
    ratio: float | None
    flagged: bool  # the ratio is above the configured share
    early: int
    by_reason: tuple[tuple[str, int], ...]
    by_step: tuple[tuple[str, int], ...]
    requests: int  # customers asking while no level was breached
    repeat_customers: tuple[tuple[str, int], ...]  # over 30 days, 2 or more
    repeat_categories: tuple[tuple[str, int], ...]  # over 30 days, 3 or more tickets
    repeat_rules: tuple[tuple[str, int], ...]


def escalations(rows: Sequence[EscalationRow], day: Window, month: Window, opened: int,
                early: timedelta, flag_above: float, repeat: int = 2,
                product_gap: int = 3) -> Escalations:
    """Escalations on the day against tickets received; customers who escalate again
    and again, and categories or rules escalated on many tickets (a product gap),
    over the 30 days up to the end of the day."""
    today = [r for r in rows if day.has(r.at) and not r.requested]
    tickets = len({r.ticket for r in today})
    ratio = _ratio(tickets, opened)
    span = Window(month.start, day.end)
    recent = [r for r in rows if span.has(r.at)]
    per_customer = Counter(r.requester for r in recent)
    cats: dict[str, set[int]] = {}
    rules: dict[str, set[int]] = {}
    for r in recent:
        if not r.requested:
            cats.setdefault(r.category, set()).add(r.ticket)
            for rule in r.rules:
                rules.setdefault(rule, set()).add(r.ticket)
    return Escalations(
        len(today), tickets, ratio, ratio is not None and ratio > flag_above,
        sum(r.age is not None and r.age < early for r in today),
        _top(Counter(r.reason or "(none given)" for r in today)),
        _top(Counter(r.step or "(manual)" for r in today)),
        sum(day.has(r.at) and r.requested for r in rows),
        _top(Counter({k: n for k, n in per_customer.items() if n >= repeat})),
        _top(Counter({k: len(v) for k, v in cats.items() if len(v) >= product_gap})),
        _top(Counter({k: len(v) for k, v in rules.items() if len(v) >= product_gap})))


def _top(c: Counter[str], n: int = 10) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:n])
