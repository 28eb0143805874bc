"""Counts per local day over the 31 days a digest compares, one scan per source.

The day against "the 7 and 30 days before" reads every event of a month. Counting each
window apart would read it three times and, with a million tickets, take far longer
than the 5 s budget (bench/digest.py); so each source is scanned once, grouped by local
day, and the windows are sums of days: "tickets resolved, per day" is the mean of the
daily figures, and a rate over a window is the ratio of the sums. The definitions are
those of :func:`mailflow.digest.metrics.counts`, one day at a time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from mailflow.digest.metrics import Counts
from mailflow.digest.queries import (
    CLOCKS,
    CUSTOMER,
    ESCALATED,
    OPENED,
    REOPENED,
    REQUESTED,
    RESPONSE_KINDS,
    E,
    _in,
    _kind,
    _rating,
    _resolved,
    _within,
    has_clocks,
)
from mailflow.digest.records import Window, day_window
from mailflow.store.models import OutboxRow, Referral, Ticket, TicketEvent


def _offsets(w: Window, tz: ZoneInfo) -> list[tuple[datetime, int]]:
    """(from, UTC offset in seconds) segments of ``w``: one, or one more per DST change."""
    out: list[tuple[datetime, int]] = []
    t = w.start
    while t < w.end:
        off = t.astimezone(tz).utcoffset()
        sec = int(off.total_seconds()) if off is not None else 0
        if not out or out[-1][1] != sec:
            out.append((t, sec))
        t += timedelta(hours=1)
    return out


def _bucket(s: Session, col: Any, w: Window, tz: ZoneInfo) -> ColumnElement[int]:
    """The local day of ``col`` as a number, 0 for the first day of ``w``: wall-clock
    seconds (UTC plus the offset then) over 86400, so a 23- or 25-hour day is one day."""
    segs = _offsets(w, tz)
    off: Any = literal(segs[0][1])
    if len(segs) > 1:
        off = case(*((col < nxt[0], seg[1]) for seg, nxt in pairwise(segs)),
                   else_=segs[-1][1])
    base = w.start.timestamp() + segs[0][1]
    if s.get_bind().dialect.name == "sqlite":
        epoch: Any = (func.julianday(col) - 2440587.5) * 86400.0
        # Every row is inside the window, so the value is not negative and CAST floors it.
        return cast((epoch + off - base) / 86400.0 + 1e-9, Integer)
    return cast(func.floor((func.extract("epoch", col) + off - base) / 86400.0), Integer)


def daily_counts(s: Session, first: date, last: date, tz: ZoneInfo, fcr_window: timedelta,
                 early: timedelta, cohort_only: bool = False) -> dict[date, Counts]:
    """:class:`Counts` for each local day from ``first`` to ``last``, inclusive.
    ``cohort_only``: only what depends on the tickets opened on each day (``opened``,
    ``first_resolved``, ``first_contact``; the rest 0): all that can change for a
    stored day when only tickets opened on it changed since (:mod:`.stored`)."""
    w = Window(day_window(first, tz).start, day_window(last, tz).end)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    got: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def take(stmt: Any, *names: str) -> None:
        for row in s.execute(stmt):
            for name, value in zip(names, row[1:], strict=True):
                got[int(row[0])][name] += int(value or 0)

    # Tickets: opened, and the day's cohort for first-contact resolution.
    t = Ticket
    b = _bucket(s, t.created_at, w, tz).label("b")
    was_resolved = or_(t.resolved_at.is_not(None), t.reopen_count > 0)
    res, reopen = aliased(TicketEvent), aliased(TicketEvent)
    # Correlated by hand: nested in the EXISTS below, auto-correlation would give it a
    # FROM tickets of its own (the first resolution of any ticket, not of this one).
    first_res = (select(func.min(res.at)).where(res.ticket_id == t.id, _resolved(res, True))
                 .correlate(t).scalar_subquery())
    not_back = or_(t.reopen_count == 0, ~exists().where(
        reopen.ticket_id == t.id, _kind(reopen, REOPENED, True), reopen.at > first_res,
        _within(s, reopen.at, first_res, fcr_window.total_seconds())))
    fcr = and_(was_resolved, t.id.not_in(select(Referral.ticket_id)), not_back)
    take(select(b, func.count(), func.sum(case((was_resolved, 1), else_=0)),
                func.sum(case((fcr, 1), else_=0)))
         .where(_in(t.created_at, w)).group_by(b),
         "opened", "first_resolved", "first_contact")
    if cohort_only:
        return {d: Counts(**{k: got.get(i, {}).get(k, 0) for k in (
            "opened", "first_resolved", "first_contact")}) for i, d in enumerate(days)}

    # Responses and resolutions together: "handled" is either, counted once a ticket.
    resp = select(_bucket(s, OutboxRow.sent_at, w, tz).label("b"),
                  OutboxRow.ticket_id.label("t"), literal(1).label("r")).where(
        # ``status || ''``: the days by ``sent_at`` (indexed), not every sent row.
        OutboxRow.kind.in_(RESPONSE_KINDS), OutboxRow.status + "" == "sent",
        OutboxRow.ticket_id.is_not(None), _in(OutboxRow.sent_at, w))
    solved = select(_bucket(s, E.at, w, tz).label("b"), E.ticket_id.label("t"),
                    literal(0).label("r")).where(_in(E.at, w), _resolved())
    u = union_all(resp, solved).subquery()
    # One sort by (day, ticket), then a count per day: cheaper than two COUNT(DISTINCT).
    per = (select(u.c.b, func.sum(u.c.r).label("n"), func.min(u.c.r).label("rs"))
           .group_by(u.c.b, u.c.t).subquery())
    take(select(per.c.b, func.sum(per.c.n), func.count(),
                func.sum(case((per.c.rs == 0, 1), else_=0))).group_by(per.c.b),
         "responses", "handled", "resolved")

    # The other events, one scan: follow-ups, reopens, escalations, requests, ratings.
    b = _bucket(s, E.at, w, tz).label("b")
    esc = E.kind == ESCALATED
    rated = _rating()
    kinds = (CUSTOMER, REOPENED, ESCALATED, REQUESTED, "note", "rating")
    take(select(b, func.sum(case((E.kind == CUSTOMER, 1), else_=0)),
                func.sum(case((E.kind == REOPENED, 1), else_=0)),
                func.count(func.distinct(case((E.kind == REOPENED, E.ticket_id)))),
                func.sum(case((esc, 1), else_=0)),
                func.count(func.distinct(case((esc, E.ticket_id)))),
                func.sum(case((and_(esc, E.data["age_seconds"].as_integer()
                                    < int(early.total_seconds())), 1), else_=0)),
                func.sum(case((E.kind == REQUESTED, 1), else_=0)),
                func.sum(case((rated, 1), else_=0)),
                func.sum(case((rated, E.data["value"].as_integer()), else_=0)))
         .where(E.kind.in_(kinds), _in(E.at, w)).group_by(b),
         "customer_messages", "reopens", "reopened", "escalations", "escalated",
         "early_escalations", "escalation_requests", "ratings", "rating_sum")

    if has_clocks(s):
        c = CLOCKS.c
        when = case((c.state == "met", c.stopped_at), else_=c.due_at)
        b = _bucket(s, when, w, tz).label("b")
        take(select(b, func.sum(case((c.state == "met", 1), else_=0)),
                    func.sum(case((c.state == "breached", 1), else_=0)))
             .where(or_(and_(c.state == "met", _in(c.stopped_at, w)),
                        and_(c.state == "breached", _in(c.due_at, w)))).group_by(b),
             "clocks_met", "clocks_breached")

    out = {}
    for i, d in enumerate(days):
        g = got.get(i, {})
        vals = {k: g.get(k, 0) for k in Counts.__dataclass_fields__}
        vals["customer_messages"] += vals["opened"]  # the opening mail is one too
        out[d] = Counts(**vals)
    return out


def daily_rule_hits(s: Session, first: date, last: date, tz: ZoneInfo
                    ) -> dict[date, Counter[str]]:
    """Hits per rule in the ``opened`` events of each local day from ``first`` to
    ``last`` (the JSON list of rules expanded in SQL, one scan)."""
    w = Window(day_window(first, tz).start, day_window(last, tz).end)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    e = TicketEvent.__table__.alias("e")
    if s.get_bind().dialect.name == "sqlite":
        rules: Any = func.json_each(e.c.data, "$.rules").table_valued("value")
    else:
        rules = func.json_array_elements_text(e.c.data["rules"]).table_valued("value")
    b = _bucket(s, e.c.at, w, tz).label("b")
    q = (select(b, rules.c.value, func.count()).select_from(e).join(rules, true())
         .where(e.c.kind == OPENED, _in(e.c.at, w)).group_by(b, rules.c.value))
    out: dict[date, Counter[str]] = {d: Counter() for d in days}
    for i, name, n in s.execute(q):
        out[days[int(i)]][str(name)] += int(n)
    return out
