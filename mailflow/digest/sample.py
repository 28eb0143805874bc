"""A plausible day, built by hand, rendered without a database: for the screenshot in
the README (scripts/digest-screenshot) and for trying a template override.

A help desk of a few hundred tickets a month: 40 new tickets on the day, most answered
within the hour, a handful referred to the tier groups, two escalations (one early), a
breach, ratings, and a mailbox that stopped. Deterministic (seeded), so the picture
only changes when the digest does.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.digest.metrics import Counts, backlog, counts
from mailflow.digest.records import (
    ClockRecord,
    Escalation,
    MailboxRecord,
    MailHealth,
    ReferralRecord,
    TicketRecord,
    day_window,
    escalation_rows,
)
from mailflow.digest.report import Inputs, Params, context
from mailflow.digest.signals import hits_of

DAY = date(2026, 11, 24)
H = timedelta(hours=1)
RULES = ("outage", "outage-for-everyone", "vip-customer", "billing-and-sales",
         "acme-storage", "technical-second-line", "escalation-request")


def _history(rng: random.Random, start: datetime) -> list[TicketRecord]:
    out = []
    for i in range(40):
        created = start + timedelta(minutes=rng.randrange(7 * 60, 18 * 60))
        sev = rng.choice((1, 2, 2, 3, 3, 3, 3))
        answer = created + timedelta(minutes=rng.choice((12, 20, 35, 50, 70, 95, 240)))
        follow = answer + timedelta(minutes=rng.randrange(30, 180))
        reply = follow + timedelta(minutes=rng.randrange(15, 120))
        solved = reply + timedelta(minutes=rng.randrange(20, 300))
        done = solved < start + timedelta(days=1) and rng.random() < 0.7
        referred = rng.random() < 0.15
        rules = tuple(r for r in ("outage", "vip-customer", "billing-and-sales")
                      if rng.random() < (0.55 if r == "outage" else 0.12))
        out.append(TicketRecord(
            1200 + i, created, f"customer{rng.randrange(25)}@example.com", sev,
            "administrative" if "billing-and-sales" in rules else "technical",
            "tier2" if referred else None, "resolved" if done else "open", rules,
            customer_messages=(follow,), responses=(answer, reply),
            resolutions=(solved,) if done else (),
            referrals=(created + 20 * 60 * timedelta(seconds=1),) if referred else (),
            ratings=((solved + 2 * H, rng.choice((5, 5, 4, 4, 3, 2))),)
            if done and rng.random() < 0.3 else ()))
    out[3] = TicketRecord(**{**out[3].__dict__, "escalations": (
        Escalation(out[3].created_at + 2 * H, "first-response-missed", "first response due",
                   2 * H),)})
    out[9] = TicketRecord(**{**out[9].__dict__, "escalations": (
        Escalation(out[9].created_at + 9 * H, "update-missed", "no update from tier2",
                   9 * H),), "escalation_requests": (out[9].created_at + 10 * H,)})
    old = [TicketRecord(1000 + k, start - timedelta(days=d), f"old{k}@example.com", s,
                        owner_group=g, status="referred" if g else "open")
           for k, (d, s, g) in enumerate(((12, 3, "vendor-acme"), (6, 2, "tier2"),
                                          (2, 3, None), (1, 1, "tier2"), (4, 3, None)))]
    return old + out


def sample_context(now: datetime | None = None) -> dict[str, Any]:
    """The template context of the sample day (Europe/Berlin, digest at 07:00)."""
    tz = ZoneInfo("Europe/Berlin")
    w = day_window(DAY, tz)
    now = now or datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    rng = random.Random(24)
    tickets = _history(rng, w.start)
    early, fcr = 4 * H, timedelta(days=7)
    clocks = tuple(
        ClockRecord(t.id, "first_response", t.severity, t.owner_group, t.created_at,
                    t.created_at + (H, 4 * H, 24 * H)[t.severity - 1],
                    t.responses[0] if t.responses else None,
                    "met" if t.responses and t.responses[0] - t.created_at
                    <= (H, 4 * H, 24 * H)[t.severity - 1] else "breached")
        for t in tickets if t.responses)
    referrals = tuple(ReferralRecord(t.id, "tier2", t.severity, t.referrals[0],
                                     t.referrals[0] + 40 * timedelta(minutes=1),
                                     eta=None if t.id % 2 else t.created_at + 30 * H)
                      for t in tickets if t.referrals)
    per_day = Counts(opened=31, customer_messages=52, responses=60, handled=44, resolved=29,
                     first_resolved=24, first_contact=17, reopened=2, reopens=2,
                     escalated=1, escalations=1, early_escalations=0, ratings=8,
                     rating_sum=33, clocks_met=40, clocks_breached=3)

    def times(c: Counts, n: int) -> Counts:
        return Counts(**{k: getattr(c, k) * n for k in Counts.__dataclass_fields__})

    month = Counter({r: n * 25 for r, n in hits_of(tickets, w).items()})
    month.update({"outage": 380, "vip-customer": 70, "billing-and-sales": 60,
                  "acme-storage": 14, "technical-second-line": 22})
    health = MailHealth(0, 1, 1, 2, now - timedelta(minutes=3), (
        MailboxRecord("INBOX", now - timedelta(minutes=2)),
        MailboxRecord("Tier replies", now - timedelta(days=2, hours=5))))
    inputs = Inputs(DAY, w, now, counts(tickets, w, fcr, early, clocks), times(per_day, 7),
                    times(per_day, 30), tuple(tickets), backlog(tickets, w.end),
                    tuple(escalation_rows(tickets)), clocks, referrals,
                    hits_of(tickets, w), month, health)
    params = Params(fcr_window=fcr, early=early, flag_above=0.02,
                    targets={1: H, 2: 4 * H, 3: 24 * H},
                    labels={1: "critical", 2: "high", 3: "normal"},
                    accept_within={("tier2", s): H for s in (1, 2, 3)},
                    known_rules=RULES, tz="Europe/Berlin")
    return context(inputs, params)

