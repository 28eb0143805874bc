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

import contextlib
import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from mailflow.classify.problems import Problem, RulesError
from mailflow.classify.yamlsource import LocDict, LocList, YamlProblem, load_located
from mailflow.slaclock import KINDS, ClockState, TicketClocks, instant_at

ACTIONS = ("remind-owner", "refer-fallback", "notify-leader", "notify-management",
           "raise-severity", "customer-update")
CHAINS = ("technical", "administrative")
_STEP_KEYS = {"name", "description", "clock", "at", "actions"}
_OFFSET = re.compile(r"^([+-]?)\s*(?:(\d+(?:\.\d+)?)\s*%|((?:\d+\s*[hms]\s*)+)|0)$")
_PART = re.compile(r"(\d+)\s*([hms])")
_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")
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
                now: datetime, due_now: bool) -> list[_Candidate]:
    """Unfired steps of running clocks with their moments, in order: with ``due_now``
    those due at ``now``, else also the first one of each clock still to come."""
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
            if not due_now and (step.clock not in later or amount < later[step.clock][0]):
                later[step.clock] = (amount, index, key, step, clock)
            continue
        moment = step_moment(step, clock)
        if moment is not None and (not due_now or moment <= now):
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
    """``due_steps`` and the next step time after them, from one list of candidates:
    the calendar walk for a step's moment is the expensive part, done once per step."""
    if tc.resolved or tc.waiting:
        return StepPlan((), None)
    found = _candidates(config, tc, fired, now, False)
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
    """The steps of the ticket's chain (by category) that are due at ``now`` and not in
    ``fired``, in the order they became due. Empty while a guard holds (``held``).
    ``tc`` is best computed for the same ``now`` (it is then cheaper)."""
    if held(tc, now) is not None:
        return []
    return _due(config, tc, _candidates(config, tc, fired, now, True), now)


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
    # Memoised: a tick names the same few due times for every ticket opened together.
    return f"{at.astimezone(zone):%Y-%m-%d %H:%M %Z}"


def next_step_time(config: EscalationConfig, tc: TicketClocks, fired: Collection[StepKey],
                   now: datetime) -> datetime | None:
    """When the scheduler should look at this ticket again for escalation: the earliest
    unfired step (``now`` if one is due), the end of a snooze, or None (resolved,
    waiting on the customer: a new fact will wake it)."""
    if tc.resolved or tc.waiting:
        return None
    found = _candidates(config, tc, fired, now, False)
    if not found:
        return None
    first = max(found[0][0], now)
    if tc.snoozed_until is not None and tc.snoozed_until > now:
        return max(first, tc.snoozed_until)
    return first


# -- loading ----------------------------------------------------------------------------

def load_escalation(rules_dir: Path, display: str | None = None) -> EscalationConfig:
    """Read ``rules_dir/escalation.yaml``; RulesError with every problem, file:line."""
    file = f"{display or rules_dir}/escalation.yaml"
    problems: list[Problem] = []

    def add(line: int, what: str) -> None:
        problems.append(Problem(file, line, what))

    try:
        data = load_located((rules_dir / "escalation.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError([Problem(file, 0, "file not found (see docs/sla.md)")]) from None
    except YamlProblem as exc:
        raise RulesError([Problem(file, exc.line, exc.what)]) from None
    except (UnicodeDecodeError, OSError, ValueError) as exc:
        raise RulesError([Problem(file, 1, f"cannot read: {exc}")]) from None
    if not isinstance(data, LocDict):
        raise RulesError([Problem(file, getattr(data, "line", 1), "escalation.yaml is a "
                                  "mapping with `chains:` (and `management:`, `late_after:`)")])
    for k in data:
        if k not in ("chains", "management", "late_after"):
            add(data.line_of(k), f"unknown key {k!r} (expected chains, management, late_after)")
    late_after = timedelta(minutes=15)
    if "late_after" in data:
        off = None
        with contextlib.suppress(ValueError):
            off = parse_offset(data["late_after"])
        if off is None or off.percent is not None or off.business <= timedelta(0):
            add(data.line_of("late_after"), f"late_after: must be a time such as 15m or 1h "
                                            f"(got {data['late_after']!r})")
        else:
            late_after = off.business
    raw_mgmt = data.get("management") or []
    management = tuple(raw_mgmt if isinstance(raw_mgmt, list) else [raw_mgmt])
    for a in management:
        if not isinstance(a, str) or not _ADDRESS.fullmatch(a):
            add(data.line_of("management"), f"management: {a!r} is not an email address")
    chains_spec = data.get("chains")
    chains: dict[str, tuple[Step, ...]] = {}
    if not isinstance(chains_spec, LocDict):
        add(data.line_of("chains") if "chains" in data else data.line,
            "chains: must map technical and administrative to lists of steps")
        chains_spec = LocDict()
    for name in chains_spec:
        if name not in CHAINS:
            add(chains_spec.line_of(name), f"unknown chain {name!r} (chains are technical "
                                           "and administrative, the two ticket categories)")
    for name in CHAINS:
        if name not in chains_spec:
            if isinstance(data.get("chains"), LocDict):
                add(chains_spec.line, f"chains: {name} is missing (write `{name}: []` for "
                                      "no automatic escalation)")
            continue
        chains[name] = _chain(name, chains_spec[name], chains_spec.line_of(name), file, add)
    # From the YAML, so that a step refused for another reason still counts here.
    uses_mgmt = any(isinstance(chain, list) and any(
        isinstance(st, dict) and isinstance(st.get("actions"), list)
        and "notify-management" in st["actions"] for st in chain)
        for chain in chains_spec.values())
    if uses_mgmt and not management:
        add(data.line, "a step notifies management, but `management:` lists no address")
    if problems:
        raise RulesError(problems)
    return EscalationConfig(chains, management, late_after)


def _chain(name: str, spec: Any, line: int, file: str, add: Any) -> tuple[Step, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, LocList):
        add(line, f"chain {name}: must be a list of steps")
        return ()
    steps: list[Step] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(spec):
        sline = spec.line_of(i)
        step_name = item.get("name") if isinstance(item, LocDict) else None
        if isinstance(step_name, str) and step_name in seen:
            add(sline, f"chain {name}: step name {step_name!r} is already used at line "
                       f"{seen[step_name]}")
            continue
        if isinstance(step_name, str):
            seen[step_name] = sline
        step = _step(name, item, sline, i, file, add)
        if step is not None:
            steps.append(step)
    return tuple(steps)


def _step(chain: str, spec: Any, line: int, index: int, file: str, add: Any) -> Step | None:
    if not isinstance(spec, LocDict):
        add(line, f"chain {chain}: step {index + 1} must be a mapping with name, clock, at, "
                  "actions")
        return None
    errors = 0

    def bad(at_line: int, what: str) -> None:
        nonlocal errors
        errors += 1
        add(at_line, what)

    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        bad(line, f"chain {chain}: step {index + 1} needs a `name`")
        name = f"step-{index + 1}"
    who = f"chain {chain}, step {name}"
    for k in spec:
        if k not in _STEP_KEYS:
            bad(spec.line_of(k), f"{who}: unknown key {k!r} (expected "
                                 f"{', '.join(sorted(_STEP_KEYS))})")
    clock = spec.get("clock")
    if clock not in KINDS:
        bad(spec.line_of("clock") if "clock" in spec else line,
            f"{who}: clock must be one of {', '.join(KINDS)} (got {clock!r})")
    offset = None
    try:
        offset = parse_offset(spec.get("at", ""))
    except ValueError as exc:
        bad(spec.line_of("at") if "at" in spec else line, f"{who}: {exc}")
    actions = _actions(spec.get("actions"), spec.line_of("actions") if "actions" in spec
                       else line, chain, who, bad)
    if errors or offset is None:
        return None
    return Step(name, str(spec.get("description", "")), str(clock), offset, actions,
                f"{file}:{line}")


def _actions(raw: Any, line: int, chain: str, who: str, bad: Any) -> tuple[Action, ...]:
    if not isinstance(raw, list) or not raw:
        bad(line, f"{who}: actions must be a non-empty list of {', '.join(ACTIONS)} or "
                  "{notify: address}")
        return ()
    out: list[Action] = []
    for item in raw:
        if isinstance(item, dict) and set(item) == {"notify"}:
            if isinstance(item["notify"], str) and _ADDRESS.fullmatch(item["notify"]):
                out.append(Action("notify", item["notify"]))
            else:
                bad(line, f"{who}: notify: {item['notify']!r} is not an email address")
        elif item in ACTIONS:
            if chain == "administrative" and item == "refer-fallback":
                bad(line, f"{who}: refer-fallback hands the ticket along the tier groups; "
                          "administrative tickets escalate through management (use "
                          "notify-management or notify-leader)")
            out.append(Action(str(item)))
        else:
            bad(line, f"{who}: unknown action {item!r} (known: {', '.join(ACTIONS)}, "
                      "{notify: address})")
    return tuple(out)
