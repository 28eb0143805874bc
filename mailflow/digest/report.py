"""The digest as the templates show it: figures in, plain text values out. Pure.

The outbox stores a mail's context as JSON and renders it at delivery, so everything
here is strings, numbers, lists and dicts, already formatted (durations as "2h 05m",
shares as "66.7 %", bar widths as whole per cents). "Where to act" collects the few
lines a manager should not miss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.digest.levels import Met, compliance, tiers
from mailflow.digest.metrics import (
    AGE_BANDS,
    Backlog,
    Counts,
    Spread,
    escalations,
    first_response,
    reply_speed,
    resolution,
)
from mailflow.digest.records import (
    ClockRecord,
    EscalationRow,
    MailHealth,
    ReferralRecord,
    TicketRecord,
    Window,
)
from mailflow.digest.signals import mail_health, rule_hits, satisfaction, trends


@dataclass(frozen=True)
class Params:
    """What the digest is measured against (settings, groups.yaml, the rule set)."""

    fcr_window: timedelta = timedelta(days=7)
    early: timedelta = timedelta(hours=4)
    flag_above: float = 0.02
    targets: Mapping[int, timedelta] = field(default_factory=dict)  # first response
    labels: Mapping[int, str] = field(default_factory=dict)  # severity labels
    accept_within: Mapping[tuple[str, int], timedelta] = field(default_factory=dict)
    known_rules: Sequence[str] = ()
    tz: str = "UTC"
    prefix: str = "SUP"
    # How a ticket is named, by its desk (mailflow.accounts.ticket_ref); None: ``prefix``.
    ref: Callable[[int, str | None], str] | None = None


@dataclass(frozen=True)
class Inputs:
    """Everything read from the store for one day (:func:`mailflow.digest.send.collect`)."""

    day: date
    window: Window
    now: datetime
    counts: Counts
    week: Counts
    month: Counts
    tickets: tuple[TicketRecord, ...]  # those touched on the day
    backlog: Backlog
    escalations: tuple[EscalationRow, ...]  # the 30 days up to the end of the day
    clocks: tuple[ClockRecord, ...]  # decided on the day
    referrals: tuple[ReferralRecord, ...]
    day_hits: Mapping[str, int]
    month_hits: Mapping[str, int]
    health: MailHealth
    has_clocks: bool = True
    # The desk of each ticket the digest may name that is not on the main mailbox.
    desks: Mapping[int, str] = field(default_factory=dict)


def duration(td: timedelta | None) -> str:
    if td is None:
        return "-"
    m = int(td.total_seconds() // 60)
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


def span(td: timedelta) -> str:
    """A configured length in words: "7 days", "4 hours", "90 minutes"."""
    secs = int(td.total_seconds())
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if secs and secs % size == 0:
            n = secs // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{secs} seconds"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def num(x: float | None) -> str:
    if x is None:
        return "-"
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _spread(s: Spread) -> dict[str, Any]:
    return {"count": s.count, "mean": duration(s.mean), "median": duration(s.median),
            "p90": duration(s.p90)}


def _met(m: Met) -> dict[str, Any]:
    share = m.share
    return {"met": m.met, "breached": m.breached, "share": pct(share),
            "bar": None if share is None else round(100 * share)}


def context(i: Inputs, p: Params) -> dict[str, Any]:
    """The template context of one day's digest."""
    tz = ZoneInfo(p.tz)

    def ref(t: int) -> str:
        desk = i.desks.get(t)
        return p.ref(t, desk) if p.ref else f"{p.prefix}-{t}"

    def local(t: datetime | None) -> str:
        return "-" if t is None else t.astimezone(tz).strftime("%Y-%m-%d %H:%M")

    w, c = i.window, i.counts
    fr = first_response(i.tickets, w, p.targets)
    esc = escalations(i.escalations, w, Window(w.start - timedelta(days=29), w.start),
                      c.opened, p.early, p.flag_above)
    sla = compliance(i.clocks, w)
    tier = tiers(i.referrals, i.clocks, w, p.accept_within)
    sat = satisfaction(i.tickets, w)
    rules = rule_hits(i.day_hits, c.opened, i.month_hits, p.known_rules)
    health = mail_health(i.health, i.now)
    biggest = max([sum(b.values()) for b in i.backlog.bands.values()] + [1])
    act: list[str] = []
    if esc.flagged:
        act.append(f"Escalation ratio {pct(esc.ratio)} is above {pct(p.flag_above)}.")
    if esc.early:
        act.append(f"{esc.early} escalation(s) within the first {span(p.early)}: was "
                   "the normal process given a chance?")
    if sla.breaches:
        act.append(f"{len(sla.breaches)} service level(s) breached: "
                   + ", ".join(ref(b.ticket) for b in sla.breaches[:8]) + ".")
    for t in tier:
        if t.missing_eta:
            act.append(f"{t.group}: no ETA or next update on "
                       + ", ".join(ref(x) for x in t.missing_eta[:8]) + ".")
        if t.not_accepted_late:
            act.append(f"{t.group}: {t.not_accepted_late} referral(s) not accepted in time.")
    if sat.low:
        act.append("Low ratings: " + ", ".join(f"{ref(t)} ({v}/5)" for t, v in sat.low) + ".")
    for name, n in esc.repeat_customers:
        act.append(f"{name} escalated {n} times in 30 days.")
    for name, n in esc.repeat_categories:
        act.append(f"Category {name}: {n} tickets escalated in 30 days (a product gap?).")
    for name, since in health.stalled:
        act.append(f"Mailbox {name} took no mail in for {duration(since)}.")
    if health.failed or health.quarantined:
        act.append(f"Mail: {health.failed} failed deliveries, {health.quarantined} "
                   "message(s) quarantined.")
    return {
        "subject": f"Support digest {i.day.isoformat()}",
        "day": i.day.isoformat(), "weekday": i.day.strftime("%A"), "timezone": p.tz,
        "generated": local(i.now), "act": act,
        "trends": [{"name": t.name, "day": pct(t.day) if t.rate else num(t.day),
                    "week": pct(t.week) if t.rate else num(t.week),
                    "month": pct(t.month) if t.rate else num(t.month)}
                   for t in trends(c, i.week, i.month)],
        "volume": {"opened": c.opened, "messages": c.customer_messages,
                   "handled": c.handled, "resolved": c.resolved, "responses": c.responses},
        "backlog": {
            "total": i.backlog.total, "severities": [1, 2, 3],
            "bands": [{"name": name, "counts": [i.backlog.bands[name].get(s, 0)
                                                for s in (1, 2, 3)],
                       "total": sum(i.backlog.bands[name].values()),
                       "bar": round(100 * sum(i.backlog.bands[name].values()) / biggest)}
                      for name, _ in AGE_BANDS],
            "oldest": [{"ref": ref(t), "opened": local(at), "age": duration(i.now - at),
                        "severity": sev, "owner": owner or "frontline"}
                       for t, at, sev, owner in i.backlog.oldest]},
        "first_response": {**_spread(fr.spread), "within": fr.within, "share": pct(fr.share),
                           "bar": None if fr.share is None else round(100 * fr.share),
                           "targets": {str(k): duration(v) for k, v in p.targets.items()}},
        "reply_speed": _spread(reply_speed(i.tickets, w)),
        "resolution": {**_spread(resolution(i.tickets, w)),
                       "fcr": pct(c.fcr_rate), "fcr_count": c.first_contact,
                       "first_resolved": c.first_resolved,
                       "fcr_window": span(p.fcr_window),
                       "reopen_rate": pct(c.reopen_rate), "reopens": c.reopens,
                       "reopened": c.reopened, "rate": pct(c.resolution_rate)},
        "escalations": {
            "count": esc.count, "tickets": esc.tickets, "ratio": pct(esc.ratio),
            "flagged": esc.flagged, "flag_above": pct(p.flag_above), "early": esc.early,
            "early_within": span(p.early), "requests": esc.requests,
            "by_reason": [list(x) for x in esc.by_reason],
            "by_step": [list(x) for x in esc.by_step],
            "repeat_customers": [list(x) for x in esc.repeat_customers],
            "repeat_categories": [list(x) for x in esc.repeat_categories],
            "repeat_rules": [list(x) for x in esc.repeat_rules]},
        "tiers": [{"group": t.group, "received": t.received, "accepted": _met(t.accepted),
                   "late_accept": t.not_accepted_late, "updates": _met(t.updates),
                   "resolved": _met(t.resolved),
                   "missing_eta": [ref(x) for x in t.missing_eta]} for t in tier],
        "sla": {"available": i.has_clocks, "total": _met(sla.total),
                "by_severity": [{"name": f"{s} {p.labels.get(s, '')}".strip(), **_met(m)}
                                for s, m in sla.by_severity.items()],
                "by_group": [{"name": g, **_met(m)} for g, m in sla.by_group.items()],
                "breaches": [{"ref": ref(b.ticket), "clock": b.kind.replace("_", " "),
                              "severity": b.severity, "owner": b.owner_group or "frontline",
                              "due": local(b.due_at)} for b in sla.breaches]},
        "satisfaction": {"count": sat.count, "average": num(sat.average),
                         "low": [{"ref": ref(t), "rating": v} for t, v in sat.low]},
        "rules": {"hits": [{"rule": h.rule, "day": h.day, "share": pct(h.share),
                            "month": h.month} for h in rules.rules if h.day or h.month],
                  "never": list(rules.never), "most": list(rules.most)},
        "health": {"ok": health.ok, "quarantined": health.quarantined,
                   "quarantine_waiting": health.quarantine_waiting, "failed": health.failed,
                   "outbox_pending": health.outbox_pending,
                   "outbox_oldest": duration(health.outbox_oldest),
                   "stalled": [{"mailbox": m, "since": duration(d)}
                               for m, d in health.stalled]},
    }
