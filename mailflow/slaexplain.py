"""``mailflow sla explain ID``: how each due time was computed, in words.

A due time nobody can check is a due time nobody trusts: these lines show the policy
and why it applies, the calendar, each clock's start, the pauses, the closed periods
(nights, weekends, holidays by name) between start and due, and the outcome. Pure:
takes ``TicketClocks`` and ``now``, returns lines for the CLI to print.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from mailflow.businesshours import closed_periods
from mailflow.slaclock import ClockState, TicketClocks

_TITLES = {"first_response": "first response", "next_update": "next update",
           "resolution": "resolution", "tier_accept": "referral accepted"}
_MAX_GAPS = 12  # a 2-week resolution target crosses many nights; show the first ones


def explain(tc: TicketClocks, now: datetime, tz: tzinfo | None = None) -> list[str]:
    """Lines, times shown in ``tz`` (default: the policy calendar's zone)."""
    p = tc.policy
    zone = tz or p.calendar.tz
    narrowing = [f"category {', '.join(sorted(p.categories))}" if p.categories else "",
                 f"owner {', '.join(sorted(p.owners))}" if p.owners else "",
                 f"customer in {p.customers.name}" if p.customers else ""]
    why = ", ".join(x for x in narrowing if x) or "every ticket of its severity"
    lines = [
        f"severity {tc.severity}, {tc.category}, owner {tc.owner}, customer {tc.customer}, "
        f"status {tc.status}",
        f"policy {p.name} ({p.source}): severity {'/'.join(map(str, sorted(p.severities)))}"
        f", {why}",
        p.calendar.describe(),
    ]
    for at, name in tc.reclassified:
        lines.append(f"reclassified {_t(at, zone)}: policy {name}; clocks re-targeted "
                     "from their original start")
    if tc.snoozed_until is not None:
        lines.append(f"snoozed until {_t(tc.snoozed_until, zone)}: no automatic escalation")
    if tc.waiting:
        lines.append("waiting on the customer: clocks paused, no automatic escalation")
    if not tc.clocks:
        lines.append("no clocks: the policy sets no times for this ticket")
    for c in tc.clocks:
        lines.append("")
        lines.extend(clock_lines(c, now, zone))
    return lines


def clock_lines(c: ClockState, now: datetime, zone: tzinfo) -> list[str]:
    """One clock: target, start, pauses, closed periods up to the due time, outcome."""
    out = [f"{_TITLES.get(c.kind, c.kind)} (episode {c.episode}): target {c.target.text} "
           f"= {_d(c.target.business)} of business time in calendar {c.calendar.name}",
           f"  started   {_t(c.started, zone)}"]
    if c.targeted_at != c.started:
        out.append(f"  targeted  {_t(c.targeted_at, zone)} (reclassified; counted from the "
                   "start)")
    for a, b in c.pauses:
        end = f"{_t(b, zone)}" if b is not None else "(still waiting)"
        out.append(f"  paused    {_t(a, zone)} - {end}")
    if c.paused:
        out.append(f"            {_d(c.paused)} of business time paused in all")
    horizon = c.due or c.stopped or now
    gaps = [g for g in closed_periods(c.calendar, c.started, horizon)
            if not any(a <= g.start and (b is None or g.end <= b) for a, b in c.pauses)]
    for g in gaps[:_MAX_GAPS]:
        out.append(f"  closed    {_t(g.start, zone)} - {_t(g.end, zone)}: {g.why}")
    if len(gaps) > _MAX_GAPS:
        out.append(f"            ... and {len(gaps) - _MAX_GAPS} more closed periods")
    out.append(f"  used      {_d(c.consumed)} of {_d(c.target.business)} "
               f"(remaining {_d(c.remaining)})")
    if c.due is None:
        out.append("  due       unknown until the customer answers (paused)")
    else:
        out.append(f"  due       {_t(c.due, zone)} = start + {c.target.text} of business "
                   f"time" + (f" + {_d(c.paused)} paused" if c.paused else ""))
    if c.stopped is not None and c.due is not None:
        delta = c.due - c.stopped
        how = "early" if c.met else "late"
        out.append(f"  {c.state:<9} {_t(c.stopped, zone)} ({_d(abs(delta))} {how})")
    elif c.state == "breached" and c.due is not None:
        out.append(f"  breached  overdue by {_d(now - c.due)} (wall clock)")
    else:
        out.append(f"  {c.state}")
    return out


def _t(at: datetime, zone: tzinfo) -> str:
    return f"{at.astimezone(zone):%a %Y-%m-%d %H:%M %Z}"


def _d(td: timedelta) -> str:
    """``2h30m``, ``30h``, ``-45m``: hours, never days, since a business "day" is
    whatever the calendar says and 24 hours would mislead."""
    sign = "-" if td < timedelta(0) else ""
    hours, mins = divmod(int(abs(td).total_seconds() // 60), 60)
    return sign + (f"{hours}h" if hours else "") + (f"{mins}m" if mins or not hours else "")
