"""The figures of closed days, kept in ``digest_days``, so that a digest scans one day.

The digest compares the day with the 7 and 30 days before. Counting a month of a
million tickets every morning takes tens of seconds (bench/digest.py), while a day that
is over hardly changes: each day is counted once, stored as one row, and read back.

"Hardly": a closed day's figures can still change, and a stored row must give what a
fresh count would. What changes them always writes an event: mail taken in late (its
events carry the time it was received), a response or resolution recorded late, and
for the day's first-contact resolution cohort a later resolution, reopen or referral of
a ticket opened on it (the FCR window does not bound this: a ticket opened on the day
may be resolved weeks later). So each row records the newest event id it is known to
reflect (``events_upto``), and the digest reads the events written since, one range of
ids (about a day of events), and counts afresh every day one of them is about or whose
cohort it touches. SLA clocks are stored by the scheduler without an event, shortly
after they are decided: a day is only stored once it ended :data:`SETTLE` ago and the
scheduler has caught up with it.

Event ids are not handed out in commit order on PostgreSQL: a transaction still open
when the digest reads the newest id may commit an older one afterwards. There a row only
claims ids that were handed out at least :data:`LAG` before (the newest id an earlier
digest saw, long enough ago for every writer then to have finished); on SQLite, with
one writer at a time, the newest id is exact.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mailflow.digest.daily import _bucket, daily_counts, daily_rule_hits
from mailflow.digest.metrics import Counts
from mailflow.digest.queries import NOTE, OPENED, REOPENED, STATUS, _in
from mailflow.digest.records import Window, day_window
from mailflow.store.models import DigestDay, Ticket, TicketEvent

log = logging.getLogger(__name__)

VERSION = 1  # raise when a definition in daily.py changes: older rows are then ignored
SETTLE = timedelta(hours=1)  # a day is stored once it ended this long ago
LAG = timedelta(minutes=10)  # PostgreSQL: longer than any writer's transaction
# The events that can change whether a ticket counts for its opening day's FCR figures:
# opening, resolution (and any status), reopen, referral (a note).
COHORT = (OPENED, STATUS, REOPENED, NOTE)


@dataclass(frozen=True)
class DayFigures:
    """One day's figures as stored: the counts, the rule hits, and how current they are."""

    day: date
    counts: Counts
    hits: Mapping[str, int]
    events_upto: int = 0  # every event with a higher id may not be reflected
    events_seen: int = 0  # the newest event id when computed or last confirmed
    computed_at: datetime | None = None


@dataclass(frozen=True)
class Month:
    """The days a digest compares, however obtained, and the rows to store."""

    counts: dict[date, Counts]
    hits: dict[date, Counter[str]]
    save: list[DayFigures]
    counted: list[date]  # the days counted afresh now (the rest came from stored rows)
    cohorts: list[date]  # stored days whose opened tickets' counts were counted again


def basis(tz: str, fcr_window: timedelta, early: timedelta) -> str:
    """What a day's figures depend on besides the data: rows of another basis are not
    read (a changed setting computes the days again under the new one)."""
    return (f"v{VERSION} {tz} fcr={int(fcr_window.total_seconds())} "
            f"early={int(early.total_seconds())}")


def to_json(c: Counts) -> dict[str, int]:
    return {f.name: int(getattr(c, f.name)) for f in fields(Counts)}


def from_json(d: Mapping[str, object]) -> Counts:
    """A stored row back into :class:`Counts` (a field the row lacks is 0)."""
    return Counts(**{f.name: int(str(d.get(f.name, 0))) for f in fields(Counts)})


def stale(stored: Mapping[date, DayFigures], newest: Mapping[date, int]) -> set[date]:
    """The stored days that an event written since their row is about."""
    return {d for d, f in stored.items() if newest.get(d, 0) > f.events_upto}


def with_cohort(old: Counts, new: Counts) -> Counts:
    """A stored day's counts with its cohort counted again (``new``): the opening mails
    are customer messages too, the rest of the day is as stored."""
    return replace(old, opened=new.opened, first_resolved=new.first_resolved,
                   first_contact=new.first_contact,
                   customer_messages=old.customer_messages - old.opened + new.opened)


def runs(days: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) spans: one scan per span."""
    out: list[tuple[date, date]] = []
    for d in sorted(days):
        if out and out[-1][1] + timedelta(days=1) == d:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def settled(day: date, tz: ZoneInfo, now: datetime, pending: datetime | None = None) -> bool:
    """Whether ``day`` may be stored: over for :data:`SETTLE`, and the scheduler has
    caught up with it (``pending``, the earliest time a ticket is due to have its clocks
    computed, is not inside it: a clock decided on the day may not be recorded yet)."""
    end = day_window(day, tz).end
    return end + SETTLE <= now and (pending is None or pending >= end)


def horizon(stored: Iterable[DayFigures], newest: int, now: datetime, exact: bool) -> int:
    """The event id up to which rows written now may claim to be complete: the newest on
    SQLite; on PostgreSQL the newest an earlier digest saw at least :data:`LAG` ago (0
    the first time: the next digest then checks every event once)."""
    if exact:
        return newest
    known = [f.events_upto for f in stored]
    known += [f.events_seen for f in stored
              if f.computed_at is not None and f.computed_at <= now - LAG]
    return min(newest, max(known, default=0))


def load(s: Session, first: date, last: date, key: str) -> dict[date, DayFigures]:
    D = DigestDay
    rows = s.scalars(select(D).where(D.basis == key, D.day >= first, D.day <= last))
    return {r.day: DayFigures(r.day, from_json(r.counts), Counter(r.rule_hits),
                              r.events_upto, r.events_seen, r.computed_at) for r in rows}


def newest_event(s: Session) -> int:
    return int(s.scalar(select(func.max(TicketEvent.id))) or 0)


def touched_days(s: Session, since: int, w: Window, tz: ZoneInfo
                 ) -> tuple[dict[int, int], dict[int, int]]:
    """For each day of ``w`` (numbered from 0), the newest event after ``since`` that
    happened on it, and the newest that is about a ticket opened on it and may change
    its cohort's counts. Both read the ids after ``since`` only (a day of events, by
    primary key)."""
    E = TicketEvent
    out: tuple[dict[int, int], dict[int, int]] = ({}, {})
    b = _bucket(s, E.at, w, tz).label("b")
    q1 = select(b, func.max(E.id)).where(E.id > since, _in(E.at, w)).group_by(b)
    # SQLite must walk the new ids and look their tickets up, not every cohort event by
    # kind (``kind || ''``) or every ticket of the month by ``created_at`` (an
    # expression: coalesce keeps the column's type, so the bounds are bound alike).
    created = func.coalesce(Ticket.created_at, Ticket.created_at)
    b2 = _bucket(s, created, w, tz).label("b")
    q2 = (select(b2, func.max(E.id)).join(Ticket, Ticket.id == E.ticket_id)
          .where(E.id > since, (E.kind + "").in_(COHORT), _in(created, w))
          .group_by(b2))
    for q, got in zip((q1, q2), out, strict=True):
        got.update({int(i): int(top) for i, top in s.execute(q)})
    return out


def month(s: Session, first: date, last: date, tz: ZoneInfo, fcr_window: timedelta,
          early: timedelta, now: datetime) -> Month:
    """Counts and rule hits of each day from ``first`` to ``last``: stored rows where
    they still hold, the rest counted (in one scan per run of consecutive days)."""
    key = basis(tz.key, fcr_window, early)
    newest = newest_event(s)  # before anything is read: later events are checked next time
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    stored = load(s, first, last, key)
    cohorts: set[date] = set()
    if stored:
        w = Window(day_window(first, tz).start, day_window(last, tz).end)
        on_day, opened_on = touched_days(
            s, min(f.events_upto for f in stored.values()), w, tz)
        bad = stale(stored, {days[i]: top for i, top in on_day.items()})
        cohorts = stale(stored, {days[i]: top for i, top in opened_on.items()}) - bad
        stored = {d: f for d, f in stored.items() if d not in bad}
    counts = {d: f.counts for d, f in stored.items()}
    hits = {d: Counter(f.hits) for d, f in stored.items()}
    todo = [d for d in days if d not in stored]
    for a, b in runs(todo):
        counts.update(daily_counts(s, a, b, tz, fcr_window, early))
        hits.update(daily_rule_hits(s, a, b, tz))
    for a, b in runs(cohorts):
        for d, c in daily_counts(s, a, b, tz, fcr_window, early, cohort_only=True).items():
            counts[d] = with_cohort(counts[d], c)
    upto = horizon(stored.values(), newest, now, s.get_bind().dialect.name == "sqlite")
    pending = s.scalar(select(func.min(Ticket.next_due_at)))  # indexed
    save = [DayFigures(d, counts[d], hits[d],
                       max(upto, stored[d].events_upto) if d in stored else upto,
                       newest, now) for d in days if settled(d, tz, now, pending)]
    held = [d for d in days if settled(d, tz, now) and not settled(d, tz, now, pending)]
    if held:  # each digest then counts these days afresh: slower, never wrong
        log.info("digest: the figures of %s and later are not stored: a ticket has been "
                 "due for its clocks since %s (the scheduler is behind or not running)",
                 held[0].isoformat(), pending)
    return Month(counts, hits, save, todo, sorted(cohorts))


def save(sessions: sessionmaker[Session], key: str, rows: list[DayFigures]) -> None:
    """Write (or rewrite) the rows in one short transaction of their own. Best effort:
    a database that is busy or refuses costs the next digest the time to count those
    days again, not this digest its mail. Two digests writing the same day do not
    conflict (insert or update); whichever writes last leaves figures as true as the
    other's."""
    if not rows:
        return
    values = [{"day": r.day, "basis": key, "counts": to_json(r.counts),
               "rule_hits": dict(sorted(r.hits.items())), "events_upto": r.events_upto,
               "events_seen": r.events_seen, "computed_at": r.computed_at} for r in rows]
    try:
        with sessions.begin() as s:
            if s.get_bind().dialect.name == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
            stmt = insert(DigestDay).values(values)
            s.execute(stmt.on_conflict_do_update(
                index_elements=["day", "basis"],
                set_={c: stmt.excluded[c] for c in (
                    "counts", "rule_hits", "events_upto", "events_seen", "computed_at")}))
    except DBAPIError as exc:
        log.warning("digest: the figures of %d day(s) were not stored: %s", len(rows),
                    str(exc).splitlines()[0])
