"""Escalation chains (``rules/escalation.yaml``): which steps are due, as data.

Administrators say, per kind of ticket, what happens around each clock's due time::

    late_after: 15m
    management: [service-manager@example.test]
    chains:
      technical:
        - {name: remind, clock: first_response, at: -25%, actions: [remind-owner]}
        - {name: hand-off, clock: first_response, at: 0, actions: [refer-fallback,
           customer-update]}
        - {name: leader, clock: first_response, at: +2h, actions: [notify-leader]}
      administrative:
        - {name: manager, clock: first_response, at: 0, actions: [notify-management]}

Offsets count in the clock's business time: ``-25%`` is when three quarters of the
target is used, ``+2h`` two business hours after the due time (not 19:00 on a Friday).
``due_steps`` only decides; firing, events and persistence belong to the caller, which
passes the steps already fired (``StepKey``: chain, step, clock, episode), so each step
fires once per ticket and clock episode, also after a restart.

Not blind (docs/sla.md): no automatic step while the ticket waits on the customer or is
snoozed, none for a resolved ticket or a stopped clock, and a step whose moment passed
more than ``late_after`` ago (downtime) is returned marked ``late`` rather than skipped.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from mailflow.slaclock import ClockState, TicketClocks, instant_at

ACTIONS = ("remind-owner", "refer-fallback", "notify-leader", "notify-management",
           "raise-severity", "customer-update")
CHAINS = ("technical", "administrative")
_OFFSET = re.compile(r"^([+-]?)\s*(?:(\d+(?:\.\d+)?)\s*%|((?:\d+\s*[hms]\s*)+)|0)$")
_PART = re.compile(r"(\d+)\s*([hms])")
_UNIT = {"h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class Offset:
    """Relative to a clock's due time: a share of its target, or business time."""

    text: str
    percent: float | None = None  # -25.0 for "-25%"
    business: timedelta = timedelta(0)

    def amount(self, target: timedelta) -> timedelta:
        """Business time into the clock at which the step is due."""
        if self.percent is not None:
            return target * (1 + self.percent / 100)
        return target + self.business


@dataclass(frozen=True)
class Action:
    """One of ACTIONS, or ``notify`` with an ``address``."""

    kind: str
    address: str | None = None

    def __str__(self) -> str:
        return f"notify {self.address}" if self.address else self.kind


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    clock: str
    at: Offset
    actions: tuple[Action, ...]
    source: str  # file:line


@dataclass(frozen=True)
class EscalationConfig:
    chains: dict[str, tuple[Step, ...]]  # category -> steps in file order
    management: tuple[str, ...]
    late_after: timedelta


@dataclass(frozen=True)
class StepKey:
    """What the caller stores when a step fired: once per ticket, step and clock episode."""

    chain: str
    step: str
    clock: str
    episode: int


@dataclass(frozen=True)
class DueStep:
    key: StepKey
    step: Step
    moment: datetime  # when it was due by the calendar
    late: bool  # its moment passed more than late_after before it could fire
    reason: str  # for the event trail


def parse_offset(value: Any) -> Offset:
    """``-25%``, ``50%``, ``0``, ``+2h``, ``-30m``, ``+1h30m``; ValueError otherwise."""
    text = str(value).strip() if not isinstance(value, bool) else ""
    m = _OFFSET.match(text)
    if not m:
        raise ValueError(f"at: must be 0, a share of the target such as -25% or +50%, or "
                         f"business time such as +2h or -30m (got {value!r})")
    sign = -1 if m.group(1) == "-" else 1
    if m.group(2) is not None:
        pct = sign * float(m.group(2))
        if pct <= -100:
            raise ValueError(f"at: {text} would be at or before the clock's start")
        return Offset(text, percent=pct)
    seconds = sum(int(n) * _UNIT[u] for n, u in _PART.findall(m.group(3) or ""))
    return Offset(text, business=timedelta(seconds=sign * seconds))


def step_moment(step: Step, clock: ClockState) -> datetime | None:
    """When ``step`` is due for ``clock``: the instant the clock has used its target plus
    the offset, in its calendar's business time and minus its pauses; None while that
    lies beyond a pause that has not ended."""
    amount = step.at.amount(clock.target.business)
    if amount == clock.target.business and clock.stopped is None:
        # A step at the due time (``at: 0``): the clock walked that out already.
        return clock.due
    return instant_at(clock, amount)


def held(tc: TicketClocks, now: datetime) -> str | None:
    """Why no automatic step may fire now, or None."""
    if tc.resolved:
        return "the ticket is resolved"
    if tc.waiting:
        return "the ticket waits on the customer"
    if tc.snoozed_until is not None and tc.snoozed_until > now:
        return f"snoozed until {tc.snoozed_until:%Y-%m-%d %H:%M %Z}"
    return None


_Candidate = tuple[datetime, int, StepKey, Step, ClockState]


def _candidates(config: EscalationConfig, tc: TicketClocks, fired: Collection[StepKey],
                now: datetime) -> list[_Candidate]:
    """Unfired steps of running clocks with their moments, in order: those due at
    ``now`` and the first one of each clock still to come."""
    # A clock measured at ``now`` says by its consumed time alone whether a step's moment
    # has passed, so only the moments that matter are walked out in the calendar.
    exact = tc.evaluated_at == now
    out = []
    later: dict[str, tuple[timedelta, int, StepKey, Step, ClockState]] = {}
    for index, step in enumerate(config.chains.get(tc.category, ())):
        clock = tc.clock(step.clock)
        if clock is None or clock.stopped is not None:
            continue
        key = StepKey(tc.category, step.name, clock.kind, clock.episode)
        if key in fired:
            continue
        amount = step.at.amount(clock.target.business)
        if exact and amount > clock.consumed:
            if step.clock not in later or amount < later[step.clock][0]:
                later[step.clock] = (amount, index, key, step, clock)
            continue
        moment = step_moment(step, clock)
        if moment is not None:
            out.append((moment, index, key, step, clock))
    for _amount, index, key, step, clock in later.values():
        moment = step_moment(step, clock)
        if moment is not None:
            out.append((moment, index, key, step, clock))
    return sorted(out, key=lambda c: (c[0], c[1]))


@dataclass(frozen=True)
class StepPlan:
    """What the scheduler does with a ticket now: the steps to fire, and when to look
    at it again for escalation once they have fired (None: a new fact will wake it)."""

    due: tuple[DueStep, ...]
    next_at: datetime | None


def plan_steps(config: EscalationConfig, tc: TicketClocks, fired: Collection[StepKey],
               now: datetime) -> StepPlan:
    """The steps of the ticket's chain (by category) that are due at ``now`` and not in
    ``fired``, in the order they became due (none while a guard holds: ``held``), and
    the next step time after them, from one list of candidates: the calendar walk for
    a step's moment is the expensive part, done once per step. ``tc`` is best computed
    for the same ``now`` (it is then cheaper)."""
    if tc.resolved or tc.waiting:
        return StepPlan((), None)
    found = _candidates(config, tc, fired, now)
    snoozed = tc.snoozed_until is not None and tc.snoozed_until > now
    due = () if snoozed else tuple(_due(config, tc, [c for c in found if c[0] <= now], now))
    # The steps that fire now are fired by the time the next one is looked for.
    rest = found if snoozed else [c for c in found if c[0] > now]
    if not rest:
        return StepPlan(due, None)
    first = max(rest[0][0], now)
    if snoozed:
        assert tc.snoozed_until is not None
        first = max(first, tc.snoozed_until)
    return StepPlan(due, first)


def due_steps(config: EscalationConfig, tc: TicketClocks, fired: Collection[StepKey],
              now: datetime) -> list[DueStep]:
    """``plan_steps``' due steps."""
    return list(plan_steps(config, tc, fired, now).due)


def next_step_time(config: EscalationConfig, tc: TicketClocks, fired: Collection[StepKey],
                   now: datetime) -> datetime | None:
    """When the scheduler should look at this ticket again for escalation: the earliest
    unfired step (``now`` if one is due), the end of a snooze, or None (resolved,
    waiting on the customer: a new fact will wake it)."""
    plan = plan_steps(config, tc, fired, now)
    return now if plan.due else plan.next_at


def _due(config: EscalationConfig, tc: TicketClocks, candidates: list[_Candidate],
         now: datetime) -> list[DueStep]:
    snooze_end = tc.last_snooze[1] if tc.last_snooze else None
    out = []
    for moment, _i, key, step, clock in candidates:
        # It could not fire before its clock got its target, nor while snoozed.
        could_fire = max(moment, clock.targeted_at)
        if snooze_end is not None and tc.last_snooze and tc.last_snooze[0] <= could_fire \
                < snooze_end:
            could_fire = snooze_end
        late = now - could_fire > config.late_after
        zone = clock.calendar.tz
        reason = (f"{clock.kind.replace('_', ' ')} due {_when(clock.due, zone)} "
                  f"(target {clock.target.text}, policy {clock.policy}); step at "
                  f"{step.at.text}" if clock.due is not None else
                  f"{clock.kind.replace('_', ' ')} step at {step.at.text}")
        if late:
            reason += f"; late: was due {_when(moment, zone)}"
        out.append(DueStep(key, step, moment, late, reason))
    return out


@functools.lru_cache(maxsize=1024)
def _when(at: datetime, zone: tzinfo) -> str:
    # Memoised: the steps of a ticket name the same due time, and a tick many tickets.
    return f"{at.astimezone(zone):%Y-%m-%d %H:%M %Z}"


# -- loading ----------------------------------------------------------------------------

def load_escalation(rules_dir: Path, display: str | None = None) -> EscalationConfig:
    """Read ``rules_dir/escalation.yaml``; RulesError with every problem, file:line
    (:mod:`mailflow.escalation_file`, imported here to keep this name for callers)."""
    from mailflow.escalation_file import load

    return load(rules_dir, display)
