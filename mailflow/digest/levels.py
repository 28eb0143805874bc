"""Service levels in the digest: each tier group against the objectives it agreed, and
compliance per severity and group with the breaches by ticket. Pure.

Objectives are negotiated with the groups; showing them "how well you are doing today"
from the tracking data is what keeps the agreement alive (docs/digest.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailflow.digest.records import ClockRecord, ReferralRecord, Window


@dataclass(frozen=True)
class Met:
    met: int = 0
    breached: int = 0

    @property
    def share(self) -> float | None:
        n = self.met + self.breached
        return None if n == 0 else self.met / n

    def add(self, ok: bool) -> Met:
        return Met(self.met + ok, self.breached + (not ok))


def decided(k: ClockRecord, w: Window) -> bool | None:
    """Whether the clock was met (True) or breached (False) in the window, or neither:
    met when it stopped in time in the window, breached when its due time passed in
    the window. A paused or running clock is decided on neither day (a pause across
    midnight decides nothing until the clock stops or its due time passes)."""
    if k.state == "met" and w.has(k.stopped_at):
        return True
    if k.state == "breached" and w.has(k.due_at):
        return False
    return None


@dataclass(frozen=True)
class Breach:
    ticket: int
    kind: str
    severity: int
    owner_group: str | None
    due_at: datetime | None
    stopped_at: datetime | None


@dataclass(frozen=True)
class Compliance:
    by_severity: Mapping[int, Met]
    by_group: Mapping[str, Met]
    by_kind: Mapping[str, Met]
    breaches: tuple[Breach, ...]
    total: Met


def compliance(clocks: Iterable[ClockRecord], w: Window) -> Compliance:
    sev: dict[int, Met] = {}
    grp: dict[str, Met] = {}
    kind: dict[str, Met] = {}
    total = Met()
    breaches = []
    for k in clocks:
        ok = decided(k, w)
        if ok is None:
            continue
        g = k.owner_group or "frontline"
        sev[k.severity] = sev.get(k.severity, Met()).add(ok)
        grp[g] = grp.get(g, Met()).add(ok)
        kind[k.kind] = kind.get(k.kind, Met()).add(ok)
        total = total.add(ok)
        if not ok:
            breaches.append(Breach(k.ticket, k.kind, k.severity, k.owner_group, k.due_at,
                                   k.stopped_at))
    breaches.sort(key=lambda b: (b.severity, b.due_at or w.start, b.ticket))
    return Compliance(dict(sorted(sev.items())), dict(sorted(grp.items())),
                      dict(sorted(kind.items())), tuple(breaches), total)


@dataclass(frozen=True)
class TierLine:
    """One tier group's day against its objectives."""

    group: str
    received: int = 0
    accepted: Met = Met()  # referrals accepted on the day: within the time to accept
    not_accepted_late: int = 0  # still not accepted, past the time to accept
    updates: Met = Met()  # next-update clocks decided on the day
    resolved: Met = Met()  # resolution clocks decided on the day
    missing_eta: tuple[int, ...] = ()  # accepted, open, neither an ETA nor a next update


@dataclass
class _Tally:
    received: int = 0
    accepted: Met = Met()
    late: int = 0
    updates: Met = Met()
    resolved: Met = Met()
    missing: list[int] = field(default_factory=list)


def tiers(referrals: Iterable[ReferralRecord], clocks: Iterable[ClockRecord], w: Window,
          accept_within: Mapping[tuple[str, int], timedelta]) -> tuple[TierLine, ...]:
    """``accept_within``: (group, severity) -> the agreed time to accept (groups.yaml).
    A referral with no objective for its severity counts as accepted in time."""
    lines: dict[str, _Tally] = {}
    for r in referrals:
        limit = accept_within.get((r.group, r.severity))
        if w.has(r.created_at):
            lines.setdefault(r.group, _Tally()).received += 1
        if r.accepted_at is not None and w.has(r.accepted_at):
            d = lines.setdefault(r.group, _Tally())
            d.accepted = d.accepted.add(limit is None or r.accepted_at - r.created_at <= limit)
        if (r.accepted_at is None and r.ended_at is None and limit is not None
                and r.created_at + limit < w.end):
            lines.setdefault(r.group, _Tally()).late += 1
        if (r.accepted_at is not None and r.accepted_at < w.end and r.ended_at is None
                and r.eta is None and r.next_update_due is None):
            lines.setdefault(r.group, _Tally()).missing.append(r.ticket)
    for k in clocks:
        if k.kind not in ("next_update", "resolution") or not k.owner_group:
            continue
        ok = decided(k, w)
        if ok is None:
            continue
        d = lines.setdefault(k.owner_group, _Tally())
        if k.kind == "next_update":
            d.updates = d.updates.add(ok)
        else:
            d.resolved = d.resolved.add(ok)
    return tuple(TierLine(g, d.received, d.accepted, d.late, d.updates, d.resolved,
                          tuple(sorted(d.missing)))
                 for g, d in sorted(lines.items()) if g != "frontline")
