"""The digest's stored day figures (``digest_days``) on SQLite and PostgreSQL: a digest
from stored rows is the digest counted afresh, a stored day is read and not counted
again, and what changes a closed day later (a reopen within the FCR window, a late
resolution or referral of a ticket opened on it, mail taken in late) makes the next
digest count that day again. Histories are written straight into the tables (seeded,
a dozen days), later changes through the one writer where they are ticket state."""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailflow.digest import metrics, stored
from mailflow.digest import queries as q
from mailflow.digest.daily import daily_counts, daily_rule_hits
from mailflow.digest.records import day_window
from mailflow.digest.report import Params, context
from mailflow.digest.send import collect, read
from mailflow.retention import purge_raw
from mailflow.store.db import make_engine, session_factory, upgrade
from mailflow.store.models import (
    DigestDay,
    OutboxRow,
    Referral,
    Ticket,
    TicketClock,
    TicketEvent,
)
from mailflow.tickets import Status
from mailflow.tickets.apply import ApplyContext, apply
from mailflow.tickets.effects import Refer, Reopen, SetStatus

TZ = ZoneInfo("Europe/Berlin")  # a DST change (2026-10-25) inside the month
DAY = date(2026, 11, 24)
FIRST = DAY - timedelta(days=30)
NOW = datetime(2026, 11, 25, 7, tzinfo=UTC)
FCR, EARLY = timedelta(days=7), timedelta(hours=4)
RULES = ["outage", "vip", "billing"]
P = Params(fcr_window=FCR, early=EARLY, tz=TZ.key, known_rules=RULES,
           targets={1: timedelta(hours=1), 2: timedelta(hours=4), 3: timedelta(days=1)})


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    upgrade(engine)
    _fill(engine)
    yield session_factory(engine)
    engine.dispose()


def _fill(engine: Engine, n: int = 400, seed: int = 13) -> None:
    """``n`` tickets over the 12 days up to DAY, each kind of event the digest counts."""
    rng = random.Random(seed)
    end = day_window(DAY, TZ).end
    tickets: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    clocks: list[dict[str, Any]] = []
    for tid in range(1, n + 1):
        created = end - timedelta(seconds=rng.randrange(12 * 86400))
        resolved = created + timedelta(minutes=rng.randrange(30, 4000))
        status = "resolved" if resolved < end and rng.random() < 0.8 else "open"
        responded = created + timedelta(minutes=rng.randrange(5, 600))
        # Some resolutions are reopened, within the FCR window or after it, some of
        # those resolved again.
        reopened = resolved + timedelta(hours=rng.randrange(1, 240))
        reopens = status == "resolved" and reopened < end and rng.random() < 0.3
        again = reopened + timedelta(hours=2)
        last = ("resolved" if not reopens or (again < end and rng.random() < 0.5)
                else "open") if status == "resolved" else "open"
        tickets.append({
            "id": tid, "subject": "s", "requester": f"c{rng.randrange(40)}@x.test",
            "status": last, "severity": rng.choice((1, 2, 3)), "category": "technical",
            "owner_group": None, "tags": [], "reply_token": f"t{tid}",
            "reopen_count": int(reopens), "created_at": created, "updated_at": created,
            "resolved_at": (again if reopens else resolved) if last == "resolved" else None})

        def ev(kind: str, at: datetime, **data: Any) -> None:
            events.append({"ticket_id": tid, "kind": kind, "at": at,  # noqa: B023
                           "actor": "mailflow", "summary": "", "data": data})

        ev("opened", created, rules=rng.sample(RULES, rng.choice((0, 1, 2))))
        if responded < end:
            outbox.append({
                "ticket_id": tid, "kind": "status-update", "mail_from": "s@x.test",
                "recipient": "c@x.test", "message_id": f"m{tid}@x.test",
                "template": "status-update", "context": {}, "status": "sent", "attempts": 1,
                "next_attempt_at": responded, "created_at": responded, "sent_at": responded})
        if rng.random() < 0.4:
            ev("customer-message", created + (responded - created) * 1.5)
        if status == "resolved":
            ev("status-changed", resolved, status="resolved")
            if reopens:
                ev("reopened", reopened)
                if last == "resolved":
                    ev("status-changed", again, status="resolved")
            if rng.random() < 0.2:
                ev("note", resolved + timedelta(hours=2), what="rating",
                   value=rng.randrange(1, 6))
        if rng.random() < 0.1:
            refs.append({"ticket_id": tid, "group": "tier2", "token": f"r{tid}",
                         "reason": "", "created_at": created + timedelta(minutes=10)})
        if rng.random() < 0.1:
            age = rng.randrange(600, 40000)
            ev("escalated", created + timedelta(seconds=age), step="remind",
               reason="first response due", age_seconds=age, late=False)
        met = responded <= created + timedelta(hours=4)
        clocks.append({"ticket_id": tid, "kind": "first_response", "episode": 1,
                       "policy": "p", "severity": 3, "owner_group": None,
                       "started_at": created, "due_at": created + timedelta(hours=4),
                       "stopped_at": responded if met else None,
                       "state": "met" if met else "breached", "paused_seconds": 0})
    events.sort(key=lambda e: e["at"])  # ids in time order, as a store written daily has
    with session_factory(engine).begin() as s:
        for model, rows in ((Ticket, tickets), (TicketEvent, events), (OutboxRow, outbox),
                            (Referral, refs), (TicketClock, clocks)):
            s.execute(model.__table__.insert(), rows)  # type: ignore[attr-defined]


def _month(s: Session, now: datetime = NOW) -> stored.Month:
    return stored.month(s, FIRST, DAY, TZ, FCR, EARLY, now)


def _store(sessions: sessionmaker[Session], now: datetime = NOW) -> stored.Month:
    with sessions() as s:
        m = _month(s, now)
    stored.save(sessions, stored.basis(TZ.key, FCR, EARLY), m.save)
    return m


def _settle(sessions: sessionmaker[Session], now: datetime = NOW) -> None:
    """The rows as the digests of earlier mornings leave them: on PostgreSQL the first
    digest cannot vouch for ids still in flight, so the one after it checks every event
    once (``stored.horizon``); from then on each checks only what was written since."""
    _store(sessions, now - timedelta(hours=1))
    _store(sessions, now - timedelta(minutes=30))


def _fresh(s: Session) -> tuple[dict[date, Any], dict[date, Counter[str]]]:
    return (daily_counts(s, FIRST, DAY, TZ, FCR, EARLY), daily_rule_hits(s, FIRST, DAY, TZ))


def _ctx(sessions: sessionmaker[Session], now: datetime = NOW) -> dict[str, Any]:
    with sessions() as s:
        inputs, _ = read(s, DAY, P, now)
    return context(inputs, P)


def _writer(now: datetime) -> ApplyContext:
    return ApplyContext(now, "support@example.test", "example.test", "SUP")


def test_stored_days_give_the_digest_counted_afresh(sessions: sessionmaker[Session]) -> None:
    fresh_ctx = _ctx(sessions)
    first = _store(sessions, NOW - timedelta(hours=1))
    assert len(first.counted) == 31 and first.cohorts == []
    second = _store(sessions, NOW - timedelta(minutes=30))
    sqlite = sessions.kw["bind"].dialect.name == "sqlite"
    assert (second.counted == []) == sqlite  # see _settle
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(DigestDay)) == 31
        again = _month(s)
        assert again.counted == [] and again.cohorts == []  # every day from its row
        counts, hits = _fresh(s)
        assert again.counts == counts
        # ... and the SQL counts are the pure definitions (metrics.counts) day by day.
        everything = q.records(s, list(s.scalars(select(Ticket.id))))
        for d, c in counts.items():
            w = day_window(d, TZ)
            assert c == metrics.counts(everything, w, FCR, EARLY, q.clocks(s, w)), d
        assert {d: +h for d, h in again.hits.items()} == {d: +h for d, h in hits.items()}
        # The per-day rule hits add up to the window's, counted the way they were before.
        w = day_window(DAY, TZ)
        month_w = day_window(DAY - timedelta(days=29), TZ)
        assert sum((again.hits[DAY - timedelta(days=i)] for i in range(30)), Counter()) \
            == q.rule_hits(s, type(w)(month_w.start, w.end))
        assert sum(c.opened for c in again.counts.values()) == 400
    assert _ctx(sessions) == fresh_ctx  # the whole digest, from stored rows


def test_a_stored_day_is_read_not_counted_again(sessions: sessionmaker[Session]) -> None:
    _settle(sessions)
    old = DAY - timedelta(days=10)
    with sessions.begin() as s:  # a marker no count could produce
        row = s.get(DigestDay, (old, stored.basis(TZ.key, FCR, EARLY)))
        assert row is not None
        row.counts = {**row.counts, "escalations": 999}
    with sessions() as s:
        m = _month(s)
    assert m.counted == [] and m.counts[old].escalations == 999
    # Another FCR window is another basis: its days are counted, the marker not read.
    with sessions() as s:
        other = stored.month(s, FIRST, DAY, TZ, timedelta(days=3), EARLY, NOW)
    assert len(other.counted) == 31 and other.counts[old].escalations != 999


def test_a_reopen_within_the_fcr_window_counts_the_day_again(
        sessions: sessionmaker[Session]) -> None:
    _settle(sessions)
    # A first-contact resolution of two days before, reopened by the customer today.
    d = DAY - timedelta(days=2)
    w = day_window(d, TZ)
    with sessions() as s:
        referred = select(Referral.ticket_id)
        tid = s.scalar(select(Ticket.id).where(
            Ticket.created_at >= w.start, Ticket.created_at < w.end,
            Ticket.status == "resolved", Ticket.id.not_in(referred)).order_by(Ticket.id))
        before = _month(s).counts[d]
    assert tid is not None
    later = NOW + timedelta(hours=2)
    with sessions.begin() as s:
        apply(s, [Reopen(tid, later, "customer wrote again")], _writer(later))
    with sessions() as s:
        m = _month(s, later)
        assert m.cohorts == [d] and m.counted == []  # only the cohort counted, one day
        assert m.counts[d].first_contact == before.first_contact - 1
        assert m.counts[d].first_resolved == before.first_resolved
        assert m.counts == _fresh(s)[0]
    # Stored again with the reopen: on PostgreSQL vouched for one digest later (LAG).
    key = stored.basis(TZ.key, FCR, EARLY)
    stored.save(sessions, key, m.save)
    after = later + stored.LAG
    with sessions() as s:
        m = _month(s, after)
    assert (m.cohorts == []) == (sessions.kw["bind"].dialect.name == "sqlite")
    stored.save(sessions, key, m.save)
    with sessions() as s:
        assert _month(s, after + stored.LAG).cohorts == []


def test_a_late_resolution_or_referral_of_an_old_days_ticket_counts(
        sessions: sessionmaker[Session]) -> None:
    """Beyond the FCR window: a ticket opened 11 days ago resolved or referred today."""
    _settle(sessions)
    d = DAY - timedelta(days=11)
    w = day_window(d, TZ)
    with sessions() as s:
        ids = list(s.scalars(select(Ticket.id).where(
            Ticket.created_at >= w.start, Ticket.created_at < w.end,
            Ticket.status == "open").order_by(Ticket.id)))
    assert len(ids) >= 1
    later = NOW + timedelta(hours=3)
    fx: list[Any] = [SetStatus(ids[0], Status.RESOLVED, "solved", "agent@example.test")]
    if len(ids) > 1:
        fx.append(Refer(ids[1], "tier2", "tok-late", "needs tier 2"))
    with sessions.begin() as s:
        apply(s, fx, _writer(later))
    with sessions() as s:
        m = _month(s, later)
        assert d in m.cohorts
        assert m.counts == _fresh(s)[0]


def test_mail_taken_in_late_counts_its_day_again(sessions: sessionmaker[Session]) -> None:
    """An event written now about a stored day (mail received then, fetched now)."""
    _settle(sessions)
    d = DAY - timedelta(days=5)
    at = day_window(d, TZ).start + timedelta(hours=10)
    with sessions.begin() as s:
        s.execute(TicketEvent.__table__.insert(), [{  # type: ignore[attr-defined]
            "ticket_id": 1, "kind": "customer-message", "at": at, "actor": "c@x.test",
            "summary": "", "data": {}}])
    with sessions() as s:
        before = s.get(DigestDay, (d, stored.basis(TZ.key, FCR, EARLY)))
        assert before is not None
        m = _month(s)
        assert m.counted == [d]
        assert m.counts[d].customer_messages == before.counts["customer_messages"] + 1
        assert m.counts == _fresh(s)[0]


def test_only_closed_days_are_stored(sessions: sessionmaker[Session]) -> None:
    """The reported day is stored once it has been over for a while, not before (the
    scheduler records the day's last clocks shortly after)."""
    soon = day_window(DAY, TZ).end + timedelta(minutes=5)
    _settle(sessions, soon)
    with sessions() as s:
        m = _month(s, soon)
    assert [r.day for r in m.save][-1] == DAY - timedelta(days=1)
    with sessions() as s:
        assert s.get(DigestDay, (DAY, stored.basis(TZ.key, FCR, EARLY))) is None
        assert _month(s, soon).counted == [DAY]


def test_two_digests_storing_the_same_days_do_not_conflict(
        sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture) -> None:
    with sessions() as s:
        m = _month(s)
    key = stored.basis(TZ.key, FCR, EARLY)
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def worker() -> None:
        try:
            go.wait()
            for _ in range(5):
                stored.save(sessions, key, m.save)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="mailflow.digest.stored"):
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and "not stored" not in caplog.text
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(DigestDay)) == 31


def test_the_digest_stores_its_days_and_retention_keeps_them(
        sessions: sessionmaker[Session]) -> None:
    _settle(sessions)
    collect(sessions, DAY, P, NOW)  # the way the daemon's digest stores them
    with sessions() as s:
        assert set(s.scalars(select(DigestDay.computed_at))) == {NOW}
    with sessions.begin() as s:
        s.execute(update(Ticket).values(status="closed", closed_at=NOW - timedelta(days=400)))
    purge_raw(sessions, NOW, 30)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(DigestDay)) == 31
        assert _month(s).counted == []


def test_the_digest_knows_the_desk_of_the_tickets_it_names(
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        oldest = s.scalar(select(Ticket.id).where(Ticket.status == "open")
                          .order_by(Ticket.created_at, Ticket.id))
        s.execute(update(Ticket).where(Ticket.id == oldest).values(desk="billing"))
    with sessions() as s:
        inputs, _ = read(s, DAY, P, NOW)
    assert oldest == inputs.backlog.oldest[0][0] and inputs.desks == {oldest: "billing"}


def test_a_day_is_not_stored_while_the_scheduler_is_behind_on_it(
        sessions: sessionmaker[Session]) -> None:
    """A ticket due for its clocks on the 20th (the daemon was down): its clock figures
    may still change without an event, so the 20th and later are not stored yet."""
    behind = day_window(DAY - timedelta(days=4), TZ).start + timedelta(hours=12)
    with sessions.begin() as s:
        s.execute(update(Ticket).where(Ticket.id == 1).values(next_due_at=behind))
    with sessions() as s:
        m = _month(s)
    assert [r.day for r in m.save][-1] == DAY - timedelta(days=5)
