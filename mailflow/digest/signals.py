"""The rest of the morning read: satisfaction, rule hits, mail health, and the day
against the 7 and 30 days before it. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailflow.digest.metrics import Counts
from mailflow.digest.records import MailHealth, TicketRecord, Window


@dataclass(frozen=True)
class Satisfaction:
    count: int
    average: float | None
    low: tuple[tuple[int, int], ...]  # (ticket, rating) at or under ``low``


def satisfaction(tickets: Iterable[TicketRecord], w: Window, low: int = 2) -> Satisfaction:
    got = [(t.id, v) for t in tickets for at, v in t.ratings if w.has(at)]
    avg = sum(v for _, v in got) / len(got) if got else None
    return Satisfaction(len(got), avg, tuple(sorted((i, v) for i, v in got if v <= low)))


@dataclass(frozen=True)
class RuleHit:
    rule: str
    day: int
    share: float | None  # of the tickets opened on the day
    month: int  # the 30 days up to the end of the day


@dataclass(frozen=True)
class RuleHits:
    rules: tuple[RuleHit, ...]
    never: tuple[str, ...]  # known rules that matched nothing in 30 days
    most: tuple[str, ...]  # matched more than ``most`` of the day's new tickets


def rule_hits(day: Mapping[str, int], opened: int, month: Mapping[str, int],
              known: Sequence[str], most: float = 0.5) -> RuleHits:
    """``day``/``month``: hits per rule in the opened events' ``rules``. A rule that
    fires on most mail is probably too broad; one that never fires, dead or broken."""
    names = sorted(set(day) | set(month) | set(known))
    hits = tuple(RuleHit(r, day.get(r, 0), day.get(r, 0) / opened if opened else None,
                         month.get(r, 0)) for r in names)
    return RuleHits(hits, tuple(r for r in known if not month.get(r)),
                    tuple(h.rule for h in hits if h.share is not None and h.share > most))


def hits_of(tickets: Iterable[TicketRecord], w: Window) -> Counter[str]:
    """Rule hits of the tickets opened in ``w`` (hand-built histories)."""
    return Counter(r for t in tickets if w.has(t.created_at) for r in t.rules)


@dataclass(frozen=True)
class Health:
    quarantined: int
    quarantine_waiting: int
    failed: int
    outbox_pending: int
    outbox_oldest: timedelta | None
    stalled: tuple[tuple[str, timedelta], ...]  # mailbox, time since its last commit
    ok: bool


def mail_health(h: MailHealth, now: datetime, stalled_after: timedelta = timedelta(days=1),
                backlog_after: timedelta = timedelta(hours=1)) -> Health:
    """A mailbox whose checkpoint has not moved for ``stalled_after`` took no mail in:
    either nobody wrote (rare for a support address) or the watcher is stuck."""
    oldest = None if h.oldest_pending is None else now - h.oldest_pending
    stalled = tuple((m.name, now - m.updated_at) for m in h.mailboxes
                    if now - m.updated_at > stalled_after)
    ok = not (h.quarantined or h.failed or stalled
              or (oldest is not None and oldest > backlog_after))
    return Health(h.quarantined, h.quarantine_waiting, h.failed, h.outbox_pending, oldest,
                  stalled, ok)


@dataclass(frozen=True)
class Trend:
    """A figure on the day against the per-day average (counts) or the rate (ratios) of
    the 7 and 30 days before it."""

    name: str
    day: float | None
    week: float | None
    month: float | None
    rate: bool = False  # a share (shown as %), not a count


COUNT_TRENDS = (("tickets opened", "opened"), ("customer messages", "customer_messages"),
                ("tickets handled", "handled"), ("tickets resolved", "resolved"),
                ("escalations", "escalations"), ("reopens", "reopens"))
RATE_TRENDS = (("resolution rate", "resolution_rate"), ("first-contact resolution",
                                                       "fcr_rate"),
               ("reopen rate", "reopen_rate"), ("escalation ratio", "escalation_ratio"),
               ("service levels met", "sla_compliance"))


def trends(day: Counts, week: Counts, month: Counts, week_days: float = 7,
           month_days: float = 30) -> tuple[Trend, ...]:
    out = [Trend(label, getattr(day, k), getattr(week, k) / week_days,
                 getattr(month, k) / month_days) for label, k in COUNT_TRENDS]
    out += [Trend(label, getattr(day, k), getattr(week, k), getattr(month, k), True)
            for label, k in RATE_TRENDS]
    out.append(Trend("average rating", day.rating_average, week.rating_average,
                     month.rating_average))
    return tuple(out)
