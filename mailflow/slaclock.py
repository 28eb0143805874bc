"""SLA clocks: from a ticket's history and ``now``, where each promise stands.

Pure: a ticket's history is a list of small frozen facts (opened, severity changed,
status changed, responded, referred, ...) that the store turns its event trail into;
``ticket_clocks`` returns frozen ``ClockState``s and the ticket's next due time, and
reads no clock. Four clocks:

- ``first_response``: from opening to the first response (a mail to the customer from
  the front line or a tier group, never the acknowledgment);
- ``next_update``: from the latest response (or reopening) to the next one, while open;
  each response starts a new episode;
- ``resolution``: from opening to resolution; the time a ticket spent resolved before
  it was reopened does not count; each reopening starts a new episode;
- ``tier_accept``: from a referral to the group's ``#accept``, with the group's agreed
  time to accept (groups.yaml objectives); each referral is a new episode.

Clocks run in business time of the policy's calendar and pause while the ticket waits
on the customer (``waiting-on-customer`` until the status changes or the customer
writes). ``tier_accept`` does not pause: accepting a referral does not wait on anyone.

A reclassification (severity, category or owner) re-targets every clock from its
original start under the policy that now applies, in that policy's calendar. Why: the
customer's moment of truth starts when they wrote, not when we noticed how bad it
was; a ticket raised to severity 1 after three hours is overdue, and saying so is what
gets it handled. ``targeted_at`` records the change, so escalation steps whose moment
fell before it are due at once rather than reported as late (escalation_chain.py).
Met or breached is judged against the current target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from mailflow.businesshours import BusinessCalendar, add_business_time, business_time_between
from mailflow.classify.groups import Group
from mailflow.sla_policy import Policy, SlaConfig, Target, parse_target
from mailflow.slafacts import (
    RESOLVED,
    WAITING,
    Accepted,
    CategoryChanged,
    CustomerWrote,
    Fact,
    Opened,
    OwnerChanged,
    Referred,
    Responded,
    SeverityChanged,
    Snoozed,
    Span,
    StatusChanged,
)

# The facts are part of this module's interface: callers may import them from here.
__all__ = [
    "KINDS", "RESOLVED", "WAITING", "Accepted", "CategoryChanged", "ClockState",
    "CustomerWrote", "Fact", "Opened", "OwnerChanged", "Referred", "Responded",
    "SeverityChanged", "Snoozed", "Span", "StatusChanged", "TicketClocks",
    "accept_objectives", "instant_at", "promised_first_response", "ticket_clocks",
]

KINDS = ("first_response", "next_update", "resolution", "tier_accept")


# -- the result ------------------------------------------------------------------------

@dataclass(frozen=True)
class ClockState:
    kind: str
    episode: int  # escalation steps fire once per kind and episode
    started: datetime
    target: Target
    policy: str
    calendar: BusinessCalendar
    pauses: tuple[Span, ...]  # waiting on the customer (or resolved) within the clock
    paused: timedelta  # business time those pauses took, up to now
    segments: tuple[tuple[datetime, datetime], ...]  # running, up to now or the stop
    open_from: datetime | None  # runs on from here; None when stopped or paused now
    consumed: timedelta  # business time used so far
    due: datetime | None  # None while paused before the target was reached
    stopped: datetime | None
    state: str  # running | paused | met | breached
    targeted_at: datetime  # start, or the reclassification that gave the current target
    # Business time of each segment, so that instant_at skips whole segments.
    segment_business: tuple[timedelta, ...] = ()

    @property
    def met(self) -> bool:
        return self.state == "met"

    @property
    def breached(self) -> bool:
        return self.state == "breached"

    @property
    def remaining(self) -> timedelta:
        """Business time left (negative: over)."""
        return self.target.business - self.consumed


@dataclass(frozen=True)
class TicketClocks:
    severity: int
    category: str
    owner: str
    customer: str
    policy: Policy
    status: str
    clocks: tuple[ClockState, ...]
    snoozed_until: datetime | None  # only while in the future
    last_snooze: tuple[datetime, datetime] | None  # (from, until), past ones too
    reclassified: tuple[tuple[datetime, str], ...]  # (when, policy name) after opening
    next_due: datetime | None  # earliest due of a running clock (past: overdue)
    evaluated_at: datetime | None = None  # the ``now`` these states are for

    @property
    def waiting(self) -> bool:
        return self.status == WAITING

    @property
    def resolved(self) -> bool:
        return self.status == RESOLVED

    @property
    def breached(self) -> bool:
        """A promise was missed: a customer's escalation request is then escalated, not
        recorded as a false escalation."""
        return any(c.breached for c in self.clocks)

    def due_within(self, now: datetime, window: timedelta) -> bool:
        """``tickets list --due-within 1h`` (overdue ones included)."""
        return self.next_due is not None and self.next_due <= now + window

    def clock(self, kind: str) -> ClockState | None:
        return next((c for c in self.clocks if c.kind == kind), None)


def accept_objectives(groups: Mapping[str, Group]) -> dict[str, dict[int, timedelta]]:
    """``ticket_clocks``' ``accept_within`` from groups.yaml (``GroupsConfig.groups``)."""
    return {name: {sev: o.accept for sev, o in g.objectives.items()}
            for name, g in groups.items() if g.objectives}


def promised_first_response(sla: SlaConfig, opened: Opened) -> datetime | None:
    """The first-response due time to promise in the acknowledgment: the same policy
    and calendar as the clock, so the promise and the clock agree."""
    fr = ticket_clocks([opened], sla, opened.at).clock("first_response")
    return fr.due if fr is not None else None


def instant_at(clock: ClockState, amount: timedelta) -> datetime | None:
    """The instant at which ``clock`` has used ``amount`` of business time, or None when
    that lies beyond a pause that has not ended (nobody knows when it resumes)."""
    if amount <= timedelta(0):
        return clock.started
    left = amount
    first = 0
    if len(clock.segment_business) == len(clock.segments):
        # Skip whole segments that end before the moment, without walking the calendar.
        while first < len(clock.segments) and clock.segment_business[first] < left:
            left -= clock.segment_business[first]
            first += 1
    spans: list[Span] = [*clock.segments[first:]]
    if clock.open_from is not None:
        spans.append((clock.open_from, None))
    for a, b in spans:
        if b is not None:
            if b <= a:
                continue
            inside = business_time_between(clock.calendar, a, b)
            if inside < left:
                left -= inside
                continue
        return add_business_time(clock.calendar, a, left)
    return None


# -- computing -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Timeline:
    """The history reduced to what the clocks need."""

    opened: Opened
    waits: tuple[Span, ...]
    resolved_spans: tuple[Span, ...]  # resolved, until reopened
    responses: tuple[datetime, ...]
    reopens: tuple[datetime, ...]
    referrals: tuple[Referred, ...]
    accepts: tuple[Accepted, ...]
    status: str
    snoozed_until: datetime | None
    last_snooze: tuple[datetime, datetime] | None


def ticket_clocks(history: Sequence[Fact], sla: SlaConfig, now: datetime,
                  accept_within: Mapping[str, Mapping[int, timedelta]] | None = None,
                  ) -> TicketClocks:
    """Each clock's state at ``now``. ``accept_within[group][severity]`` is the group's
    agreed time to accept a referral (groups.yaml objectives), in business time of the
    ticket's calendar. Facts after ``now`` are ignored; the order of facts with the same
    time is kept."""
    now = now.astimezone(UTC)
    facts = sorted((f for f in history if f.at.astimezone(UTC) <= now),
                   key=lambda f: f.at.astimezone(UTC))
    if not facts or not isinstance(facts[0], Opened):
        raise ValueError("a ticket's history starts with Opened")
    opened = facts[0]
    sev, cat, owner = opened.severity, opened.category, opened.owner
    policy = sla.policy_for(sev, cat, owner, opened.customer)
    reclassified: list[tuple[datetime, str]] = []
    for f in facts[1:]:
        if isinstance(f, SeverityChanged):
            sev = f.severity
        elif isinstance(f, CategoryChanged):
            cat = f.category
        elif isinstance(f, OwnerChanged | Referred):
            owner = f.owner if isinstance(f, OwnerChanged) else f.group
        else:
            continue
        now_policy = sla.policy_for(sev, cat, owner, opened.customer)
        if now_policy != policy:
            reclassified.append((f.at.astimezone(UTC), now_policy.name))
        policy = now_policy
    t = _timeline(facts, now)
    retarget = reclassified[-1][0] if reclassified else None
    span = _Spans(policy.calendar)
    clocks = [c for c in (
        _first_response(t, policy, now, retarget, span),
        _next_update(t, policy, now, retarget, span),
        _resolution(t, policy, now, retarget, span),
        _tier_accept(t, policy, sev, now, retarget, accept_within or {}, span),
    ) if c is not None]
    running = [c.due for c in clocks if c.stopped is None and c.due is not None]
    return TicketClocks(sev, cat, owner, opened.customer, policy, t.status, tuple(clocks),
                        t.snoozed_until, t.last_snooze, tuple(reclassified),
                        min(running, default=None), now)


def _timeline(facts: list[Fact], now: datetime) -> _Timeline:
    status = "open"
    waits: list[Span] = []
    resolved: list[Span] = []
    responses: list[datetime] = []
    reopens: list[datetime] = []
    snoozed: tuple[datetime, datetime] | None = None
    wait_from: datetime | None = None
    resolved_from: datetime | None = None
    for f in facts[1:]:
        at = f.at.astimezone(UTC)
        if isinstance(f, Responded):
            responses.append(at)
        elif isinstance(f, Snoozed):
            snoozed = (at, f.until.astimezone(UTC))
        elif isinstance(f, CustomerWrote) and wait_from is not None:
            waits.append((wait_from, at))
            wait_from, status = None, "open"
        elif isinstance(f, StatusChanged) and f.status != status:
            if wait_from is not None:
                waits.append((wait_from, at))
                wait_from = None
            if resolved_from is not None:
                resolved.append((resolved_from, at))
                reopens.append(at)
                resolved_from = None
            if f.status == WAITING:
                wait_from = at
            elif f.status == RESOLVED:
                resolved_from = at
            status = f.status
    if wait_from is not None:
        waits.append((wait_from, None))
    if resolved_from is not None:
        resolved.append((resolved_from, None))
    return _Timeline(
        # clocks() checked that the history starts with Opened.
        cast(Opened, facts[0]), tuple(waits), tuple(resolved), tuple(responses), tuple(reopens),
        tuple(f for f in facts if isinstance(f, Referred)),
        tuple(f for f in facts if isinstance(f, Accepted)),
        status, snoozed[1] if snoozed is not None and snoozed[1] > now else None, snoozed)


class _Spans:
    """Business time between two instants in one calendar, each pair walked once: a
    ticket's first-response and resolution clocks both run from its opening to now."""

    def __init__(self, calendar: BusinessCalendar):
        self.calendar = calendar
        self.known: dict[tuple[datetime, datetime], timedelta] = {}

    def __call__(self, a: datetime, b: datetime) -> timedelta:
        found = self.known.get((a, b))
        if found is None:
            found = self.known[(a, b)] = business_time_between(self.calendar, a, b)
        return found


def _clock(kind: str, episode: int, start: datetime, stop: datetime | None,
           pauses: Sequence[Span], target: Target | None, policy: Policy, now: datetime,
           retarget: datetime | None, span: _Spans) -> ClockState | None:
    """Run a clock from ``start`` to ``stop`` (or ``now``), minus ``pauses``."""
    if target is None:
        return None
    end = stop if stop is not None else now
    inside = sorted((max(a, start), min(b or end, end)) for a, b in pauses
                    if (b is None or b > start) and a < end)
    segments: list[tuple[datetime, datetime]] = []
    cursor = start
    for a, b in inside:
        if a > cursor:
            segments.append((cursor, a))
        cursor = max(cursor, b)
    paused_now = stop is None and any(b is None and a <= now for a, b in pauses)
    if cursor < end:
        segments.append((cursor, end))
    cal = policy.calendar
    per_segment = tuple(span(a, b) for a, b in segments)
    consumed = sum(per_segment, timedelta(0))
    paused = sum((span(a, b) for a, b in inside), timedelta(0))
    open_from = None if paused_now else end
    probe = ClockState(kind, episode, start, target, policy.name, cal,
                       tuple((a, b) for a, b in pauses if (b is None or b > start) and a < end),
                       paused, tuple(segments), open_from, consumed, None, stop, "running",
                       max(start, retarget) if retarget else start, per_segment)
    # A stopped clock runs on from its stop here (open_from), so its due is where the
    # target would have fallen had it kept running: "due 12:30, met at 10:05".
    due = instant_at(probe, target.business)
    if stop is not None:
        state = "met" if due is None or stop <= due else "breached"
    elif due is not None and due < now:
        state = "breached"
    else:
        state = "paused" if paused_now else "running"
    return ClockState(kind, episode, start, target, policy.name, cal, probe.pauses, paused,
                      tuple(segments), None if stop is not None else open_from, consumed, due,
                      stop, state, probe.targeted_at, per_segment)


def _first_response(t: _Timeline, policy: Policy, now: datetime,
                    retarget: datetime | None, span: _Spans) -> ClockState | None:
    start = t.opened.at.astimezone(UTC)
    # Resolving tells the customer too: a ticket resolved unanswered stops this clock
    # rather than running on, breached, for ever.
    ends = [*t.responses[:1], *(a for a, _b in t.resolved_spans[:1])]
    stop = min(ends, default=None)
    return _clock("first_response", 0, start, stop, t.waits, policy.first_response, policy,
                  now, retarget, span)


def _next_update(t: _Timeline, policy: Policy, now: datetime,
                 retarget: datetime | None, span: _Spans) -> ClockState | None:
    if not t.responses:
        return None  # the first-response clock covers that time
    starts = sorted([*t.responses, *(r for r in t.reopens if r > t.responses[0])])
    start = starts[-1]
    resolved_at = next((a for a, b in t.resolved_spans if b is None and a >= start), None)
    if t.status == RESOLVED and resolved_at is None:
        return None  # resolved before this episode could start
    return _clock("next_update", len(starts) - 1, start, resolved_at, t.waits, policy.update,
                  policy, now, retarget, span)


def _resolution(t: _Timeline, policy: Policy, now: datetime,
                retarget: datetime | None, span: _Spans) -> ClockState | None:
    start = t.opened.at.astimezone(UTC)
    open_resolved = [a for a, b in t.resolved_spans if b is None]
    stop = open_resolved[0] if open_resolved else None
    closed = [(a, b) for a, b in t.resolved_spans if b is not None]
    return _clock("resolution", len(t.reopens), start, stop, [*t.waits, *closed],
                  policy.resolution, policy, now, retarget, span)


def _tier_accept(t: _Timeline, policy: Policy, severity: int, now: datetime,
                 retarget: datetime | None,
                 accept_within: Mapping[str, Mapping[int, timedelta]], span: _Spans,
                 ) -> ClockState | None:
    if not t.referrals or t.status == RESOLVED:
        return None
    ref = t.referrals[-1]
    within = accept_within.get(ref.group, {}).get(severity)
    if within is None:
        return None
    start = ref.at.astimezone(UTC)
    stop = next((a.at.astimezone(UTC) for a in t.accepts
                 if a.group == ref.group and a.at.astimezone(UTC) >= start), None)
    # groups.yaml durations are 24-hour days ("accept: 1d"); read as written in the
    # ticket's calendar, a day is a working day there, as sla.yaml's days are.
    target = parse_target(_show(within), policy.calendar)
    return _clock("tier_accept", len(t.referrals) - 1, start, stop, (), target, policy, now,
                  retarget, span)


def _show(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
