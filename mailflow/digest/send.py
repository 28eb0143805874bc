"""The digest out of the store and into the outbox, exactly once per day and recipient.

:func:`collect` runs the aggregate queries of one day, :func:`digest_context` turns
them into the template context, and :func:`queue_digest` queues one mail per recipient
through the one writer (:func:`mailflow.tickets.apply.apply`). The outbox's unique
``dedupe_key`` ``digest:YYYY-MM-DD:recipient`` is what makes it once: a restarted
daemon, a second worker or a manual ``mailflow digest --send`` that queue the same day
again fail on that key, each recipient in its own transaction, and move on.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailflow.accounts import apply_context, ticket_ref
from mailflow.classify.problems import RulesError
from mailflow.classify.rulefile import load_rules
from mailflow.config import Settings
from mailflow.digest import queries as q
from mailflow.digest import stored
from mailflow.digest.metrics import sum_counts
from mailflow.digest.records import Window, day_window
from mailflow.digest.report import Inputs, Params, context
from mailflow.digest.stored import Month
from mailflow.store.models import OutboxRow
from mailflow.tickets import OutboxKind
from mailflow.tickets.apply import apply
from mailflow.tickets.effects import MailRequest, QueueMail

log = logging.getLogger(__name__)
TEMPLATE = "digest"


def params(settings: Settings) -> Params:
    """What the digest measures against: settings, and from the rule files the rule
    names and the tier groups' agreed times to accept (defaults when they do not load:
    a broken rule file must not cost managers their morning mail)."""
    d = settings.digest
    known: tuple[str, ...] = ()
    accept: dict[tuple[str, int], timedelta] = {}
    try:
        rs = load_rules(settings.rules_path)
        known = tuple(r.name for r in rs.rules)
        accept = {(g.name, sev): o.accept for g in rs.groups.values()
                  for sev, o in g.objectives.items()}
    except RulesError as exc:
        log.warning("digest: rules not loaded, no rule names or objectives: %s", exc)
    return Params(fcr_window=d.fcr_window, early=d.early_escalation,
                  flag_above=d.escalation_ratio_flag,
                  targets={k: v.first_response for k, v in settings.severities.items()},
                  labels={k: v.label for k, v in settings.severities.items()},
                  accept_within=accept, known_rules=known, tz=settings.timezone,
                  prefix=settings.ticket_prefix, ref=partial(ticket_ref, settings))


def read(s: Session, day: date, p: Params, now: datetime) -> tuple[Inputs, Month]:
    """One day's inputs: the day's tickets as records, everything else aggregated; the
    earlier days from their stored figures where those still hold (:mod:`.stored`)."""
    with q.large_reads(s):
        return _read(s, day, p, now)


def _read(s: Session, day: date, p: Params, now: datetime) -> tuple[Inputs, Month]:
    tz = ZoneInfo(p.tz)
    w = day_window(day, tz)
    daily = stored.month(s, day - timedelta(days=30), day, tz, p.fcr_window, p.early, now)
    esc_w = Window(day_window(day - timedelta(days=29), tz).start, w.end)
    month_hits = sum((daily.hits[day - timedelta(days=i)] for i in range(30)), Counter[str]())
    tickets = tuple(q.records(s, q.touched(s, w)))
    backlog = q.backlog(s, min(w.end, now))
    clocks, referrals = tuple(q.clocks(s, w)), tuple(q.referrals(s, w))
    # The tickets the digest may name: the oldest open, breaches, missing ETAs, low
    # ratings. Only those not on the main mailbox need their desk's prefix.
    named = {t for t, *_ in backlog.oldest}
    named |= {c.ticket for c in clocks if c.state == "breached"}
    named |= {r.ticket for r in referrals if r.ended_at is None}
    named |= {t.id for t in tickets if any(v <= 2 for _, v in t.ratings)}
    inputs = Inputs(
        day=day, window=w, now=now,
        counts=daily.counts[day],
        week=sum_counts(daily.counts[day - timedelta(days=i)] for i in range(1, 8)),
        month=sum_counts(daily.counts[day - timedelta(days=i)] for i in range(1, 31)),
        tickets=tickets, backlog=backlog,
        escalations=tuple(q.escalation_rows(s, esc_w)),
        clocks=clocks, referrals=referrals,
        day_hits=daily.hits[day], month_hits=month_hits,
        health=q.mail_health(s, w), has_clocks=q.has_clocks(s),
        desks=q.desks(s, named))
    return inputs, daily


def collect(sessions: sessionmaker[Session], day: date, p: Params, now: datetime
            ) -> Inputs:
    """:func:`read`, then the closed days' figures stored for the next digest (in a
    transaction of its own, after the reads: a failure there costs only time)."""
    with sessions() as s:
        inputs, daily = read(s, day, p, now)
    stored.save(sessions, stored.basis(p.tz, p.fcr_window, p.early), daily.save)
    return inputs


def digest_context(sessions: sessionmaker[Session], settings: Settings, day: date,
                   now: datetime) -> dict[str, Any]:
    """The template context of ``day``'s digest (what ``--print`` shows; it reads, and
    stores only the derived figures of closed days)."""
    p = params(settings)
    return context(collect(sessions, day, p, now), p)


def queue_digest(sessions: sessionmaker[Session], settings: Settings, day: date,
                 now: datetime) -> int:
    """Queue ``day``'s digest to every configured recipient; return how many were queued
    now (0 when all of them had it already). Safe to call again, from any worker."""
    recipients = list(dict.fromkeys(r.strip().lower() for r in settings.digest.recipients
                                    if r.strip()))
    if not recipients:
        return 0
    with sessions() as s:
        have = set(s.scalars(select(OutboxRow.dedupe_key).where(
            OutboxRow.dedupe_key.in_([key(day, r) for r in recipients]))))
    todo = [r for r in recipients if key(day, r) not in have]
    if not todo:
        return 0
    ctx = digest_context(sessions, settings, day, now)
    actx = apply_context(settings, now)
    queued = 0
    for r in todo:
        mail = QueueMail(MailRequest(
            kind=OutboxKind.DIGEST, template=TEMPLATE, recipient=r, ticket=None,
            context=ctx, auto_submitted="auto-generated", dedupe_key=key(day, r)),
            summary=f"digest {day.isoformat()} to {r}")
        try:
            with sessions.begin() as s:  # one transaction per recipient
                apply(s, [mail], actx)
            queued += 1
        except IntegrityError:
            log.info("digest %s to %s was queued already", day.isoformat(), r)
    return queued


def key(day: date, recipient: str) -> str:
    return f"digest:{day.isoformat()}:{recipient}"


def last_digest_day(sessions: sessionmaker[Session]) -> date | None:
    """The newest day a digest was queued for: the scheduler's ``last_sent_day`` after
    a restart (the dedupe keys sort by day)."""
    # A range, not LIKE: the unique index on dedupe_key answers it on both databases
    # (the scheduler asks at every pass; the outbox may hold millions of rows).
    with sessions() as s:
        k = s.scalar(select(OutboxRow.dedupe_key).where(
            OutboxRow.dedupe_key >= "digest:", OutboxRow.dedupe_key < "digest;",
            OutboxRow.kind == str(OutboxKind.DIGEST))
            .order_by(OutboxRow.dedupe_key.desc()).limit(1))
    return None if k is None else date.fromisoformat(k.split(":")[1])
