"""Service levels (``rules/sla.yaml``): which times a ticket is promised, in which calendar.

One source of truth for every promise mailflow makes or checks: the first-response
time in the acknowledgment, the SLA clocks (``slaclock.py``) and the escalation steps
(``escalation_chain.py``) all take their times from the policy ``SlaConfig.policy_for``
picks. Loading reports every problem at once as ``file:line: what``, like the rule
files (docs/sla.md is the administrator's reference)::

    calendars:
      office:
        timezone: Europe/Berlin
        hours: {mon-fri: "08:00-18:00"}
        holidays: {country: DE, subdiv: BE, dates: [2026-12-24]}
    policies:
      - name: critical
        severity: 1
        calendar: 24x7
        first_response: 30m
        update: 1h
        resolution: 1d

Policies are tried top to bottom; the first whose severity and narrowing (category,
owner, customers) fit the ticket applies, so narrow policies go above broad ones.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailflow.businesshours import (
    ALWAYS,
    DAY_NAMES,
    BusinessCalendar,
    PublicHolidays,
    Window,
    parse_window,
    window_length,
)
from mailflow.classify.conditions import AddressSet
from mailflow.classify.ruleset import Problem, RulesError, _read_lists
from mailflow.classify.yamlsource import LocDict, LocList, YamlProblem, load_located

SEVERITIES = (1, 2, 3)
CATEGORIES = ("technical", "administrative")
TARGETS = ("first_response", "update", "resolution")
_POLICY_KEYS = {"name", "description", "severity", "category", "owner", "customers",
                "calendar", *TARGETS}
_CALENDAR_KEYS = {"timezone", "hours", "holidays", "24x7"}
_PART = re.compile(r"(\d+)\s*(w|d|h|m|s)")
_DURATION = re.compile(r"^\s*(?:\d+\s*[wdhms]\s*)+$")


@dataclass(frozen=True)
class Target:
    """One promised time: as written (``"1d"``) and as business time in its calendar."""

    text: str
    business: timedelta


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    severities: frozenset[int]
    categories: frozenset[str]  # empty: any
    owners: frozenset[str]  # empty: any
    customers: AddressSet | None
    calendar: BusinessCalendar
    first_response: Target | None
    update: Target | None
    resolution: Target | None
    source: str  # file:line, for explanations

    @property
    def narrowed(self) -> bool:
        return bool(self.categories or self.owners or self.customers)

    def applies(self, severity: int, category: str, owner: str, customer: str) -> bool:
        return (severity in self.severities
                and (not self.categories or category in self.categories)
                and (not self.owners or owner in self.owners)
                and (self.customers is None or self.customers.contains(customer.lower())
                     or self.customers.matches_wildcard(customer.lower())))

    def target(self, kind: str) -> Target | None:
        """``first_response``, ``update`` or ``resolution``."""
        return {"first_response": self.first_response, "update": self.update,
                "resolution": self.resolution}[kind]


@dataclass(frozen=True)
class SlaConfig:
    calendars: Mapping[str, BusinessCalendar]
    policies: tuple[Policy, ...]

    def policy_for(self, severity: int, category: str, owner: str, customer: str) -> Policy:
        """The first policy that fits; loading guarantees one for every severity."""
        for p in self.policies:
            if p.applies(severity, category, owner, customer):
                return p
        raise LookupError(f"no service-level policy for severity {severity}")


def parse_target(value: Any, cal: BusinessCalendar) -> Target:
    """``30m``, ``4h``, ``1h30m``, ``2d``, ``1w`` in ``cal``'s business time: a day is the
    calendar's business day (its longest open day: 24h in 24x7), a week its open time
    in one week, so "1d" means one working day where that is what is meant."""
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(
        value, bool) else ""
    if isinstance(value, int) and not isinstance(value, bool):
        text = f"{value}s"
    if not _DURATION.match(text):
        raise ValueError(f"must be a duration such as 30m, 4h, 1h30m or 2d (got {value!r})")
    week = timedelta(days=7) if cal.always_open else sum(
        (window_length(w) for day in cal.weekly for w in day), timedelta(0))
    units = {"w": week, "d": cal.business_day, "h": timedelta(hours=1),
             "m": timedelta(minutes=1), "s": timedelta(seconds=1)}
    total = sum((int(n) * units[u] for n, u in _PART.findall(text)), timedelta(0))
    if total <= timedelta(0):
        raise ValueError(f"must be longer than zero (got {value!r})")
    return Target(text, total)


class _Collector:
    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int, what: str) -> None:
        self.problems.append(Problem(self.file, line, what))


def _days(spec: str) -> list[int]:
    """``mon``, ``mon-fri``, ``sat,sun``; ValueError otherwise."""
    out: list[int] = []
    for part in str(spec).lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ValueError(f"unknown day {part!r} (days are mon, tue, wed, thu, fri, sat, "
                             "sun; ranges like mon-fri)")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        out.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return out


def _hours(spec: Any, line: int, name: str, c: _Collector) -> tuple[tuple[Window, ...], ...]:
    weekly: list[list[Window]] = [[] for _ in range(7)]
    if not isinstance(spec, LocDict) or not spec:
        c.add(line, f'calendar {name}: hours must map days to times, e.g. '
                    '{mon-fri: "08:00-18:00", sat: "09:00-12:00"}')
        return tuple(tuple(d) for d in weekly)
    seen: dict[int, str] = {}
    for key, value in spec.items():
        kline = spec.line_of(key)
        try:
            days = _days(key)
        except ValueError as exc:
            c.add(kline, f"calendar {name}: {exc}")
            continue
        raw = value if isinstance(value, list) else [value]
        windows: list[Window] = []
        for item in raw:
            if isinstance(item, str) and item.strip().lower() == "closed":
                continue
            try:
                windows.append(parse_window(str(item)))
            except ValueError as exc:
                c.add(kline, f"calendar {name}: {exc}")
        for d in days:
            if d in seen:
                c.add(kline, f"calendar {name}: {DAY_NAMES[d]} is given twice ({seen[d]} "
                             f"and {key})")
            seen[d] = key
            weekly[d].extend(windows)
    return tuple(tuple(d) for d in weekly)


def _holidays(spec: Any, line: int, name: str,
              c: _Collector) -> tuple[frozenset[date], PublicHolidays | None]:
    if isinstance(spec, list):
        spec = LocDict({"dates": spec})
    if not isinstance(spec, dict):
        c.add(line, f"calendar {name}: holidays must be a list of dates or "
                    "{country: XX, subdiv: YY, dates: [...]}")
        return frozenset(), None
    dates: set[date] = set()
    for k in spec:
        if k not in ("country", "subdiv", "dates"):
            c.add(line, f"calendar {name}: holidays: unknown key {k!r} (expected country, "
                        "subdiv, dates)")
    raw = spec.get("dates") or []
    for i, d in enumerate(raw if isinstance(raw, list) else [raw]):
        dline = raw.line_of(i) if isinstance(raw, LocList) else line
        try:
            dates.add(d if isinstance(d, date) else date.fromisoformat(str(d)))
        except ValueError:
            c.add(dline, f"calendar {name}: holiday {d!r} is not a date like 2026-12-24")
    public = None
    if "country" in spec:
        sub = spec.get("subdiv")
        public = PublicHolidays(str(spec["country"]).upper(), str(sub) if sub else None)
        try:
            public.check()
        except ValueError as exc:
            c.add(line, f"calendar {name}: holidays: {exc}")
            public = None
    elif "subdiv" in spec:
        c.add(line, f"calendar {name}: holidays: subdiv needs a country")
    return frozenset(dates), public


def _calendar(name: str, spec: Any, line: int, tz: tzinfo,
              c: _Collector) -> BusinessCalendar | None:
    if not isinstance(spec, LocDict):
        c.add(line, f"calendar {name}: must be a mapping (timezone, hours, holidays, 24x7)")
        return None
    before = len(c.problems)
    for k in spec:
        if k not in _CALENDAR_KEYS:
            c.add(spec.line_of(k), f"calendar {name}: unknown key {k!r} (expected "
                                   f"{', '.join(sorted(_CALENDAR_KEYS))})")
    if "timezone" in spec:
        try:
            tz = ZoneInfo(str(spec["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            c.add(spec.line_of("timezone"), f"calendar {name}: unknown time zone "
                                            f"{spec['timezone']!r} (e.g. Europe/Berlin)")
    if spec.get("24x7") is True:
        if "hours" in spec:
            c.add(spec.line_of("hours"), f"calendar {name}: a 24x7 calendar has no hours")
        return BusinessCalendar(name, tz, always_open=True)
    if "24x7" in spec and spec["24x7"] is not False:
        c.add(spec.line_of("24x7"), f"calendar {name}: 24x7 must be true or false")
    weekly = _hours(spec.get("hours"), spec.line_of("hours"), name, c)
    days, public = _holidays(spec.get("holidays", []), spec.line_of("holidays"), name, c)
    if len(c.problems) != before:
        return None
    return BusinessCalendar(name, tz, weekly, days, public)


def _group_names(rules_dir: Path) -> frozenset[str] | None:
    """Group names from groups.yaml (its own loader reports its problems)."""
    try:
        data = load_located((rules_dir / "groups.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YamlProblem):
        return None
    body = data.get("groups") if isinstance(data, dict) else None
    return frozenset({"frontline", *(body or {})}) if isinstance(body, dict) else None


def load_sla(rules_dir: Path, display: str | None = None, tz: tzinfo | None = None,
             groups: Collection[str] | None = None,
             lists: Mapping[str, AddressSet] | None = None) -> SlaConfig:
    """Read ``rules_dir/sla.yaml``; raise RulesError listing every problem with file:line.

    ``tz`` is the zone of calendars that name none (mailflow.yaml's ``timezone``);
    ``groups`` and ``lists`` default to what groups.yaml and lists/ in ``rules_dir`` hold."""
    display = display or str(rules_dir)
    c = _Collector(f"{display}/sla.yaml")
    if lists is None:
        lists = _read_lists(rules_dir, display, [])  # their problems are load_rules'
    if groups is None:
        groups = _group_names(rules_dir)
    try:
        data = load_located((rules_dir / "sla.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError([Problem(c.file, 0, "file not found (see docs/sla.md)")]) from None
    except YamlProblem as exc:
        raise RulesError([Problem(c.file, exc.line, exc.what)]) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise RulesError([Problem(c.file, 1, f"cannot read: {exc}")]) from None
    except ValueError as exc:  # PyYAML's own date parsing (2026-13-01) raises this bare
        raise RulesError([Problem(c.file, 1, f"invalid YAML: {exc}")]) from None
    if not isinstance(data, LocDict):
        raise RulesError([Problem(c.file, getattr(data, "line", 1),
                                  "sla.yaml is a mapping with `calendars:` and `policies:`")])
    for k in data:
        if k not in ("calendars", "policies"):
            c.add(data.line_of(k), f"unknown key {k!r} (expected calendars, policies)")
    calendars: dict[str, BusinessCalendar] = {"24x7": ALWAYS}
    cals = data.get("calendars") or LocDict()
    if not isinstance(cals, LocDict):
        c.add(data.line_of("calendars"), "calendars: must map names to calendars")
        cals = LocDict()
    for name, spec in cals.items():
        if name == "24x7":
            c.add(cals.line_of(name), "calendar 24x7 is built in; choose another name")
            continue
        cal = _calendar(name, spec, cals.line_of(name), tz or ZoneInfo("UTC"), c)
        if cal is not None:
            calendars[name] = cal
    bad_calendars = {n for n in cals if n not in calendars}
    policies = _policies(data, c, calendars, bad_calendars, groups, lists)
    if c.problems:
        raise RulesError(c.problems)
    return SlaConfig(calendars, policies)


def _policies(data: LocDict, c: _Collector, calendars: Mapping[str, BusinessCalendar],
              bad_calendars: set[str], groups: Collection[str] | None,
              lists: Mapping[str, AddressSet]) -> tuple[Policy, ...]:
    items = data.get("policies")
    if not isinstance(items, LocList) or not items:
        c.add(data.line_of("policies") if "policies" in data else data.line,
              "policies: must be a list of policies, at least one per severity 1, 2, 3")
        return ()
    out: list[Policy] = []
    names: dict[str, str] = {}
    for i, spec in enumerate(items):
        line = items.line_of(i)
        p = _policy(spec, line, i, c, calendars, bad_calendars, groups, lists)
        if p is None:
            continue
        if p.name in names:
            c.add(line, f"policy name {p.name!r} is already used at {names[p.name]}")
            continue
        names[p.name] = p.source
        shadow = next((q for q in out if not q.narrowed and p.severities <= q.severities), None)
        if shadow is not None:
            c.add(line, f"policy {p.name} can never apply: policy {shadow.name} above it "
                        "takes every ticket of its severity (put narrower policies first)")
        out.append(p)
    clean = not c.problems  # a policy refused above may well have been the catch-all
    for sev in SEVERITIES:
        if clean and not any(sev in p.severities and not p.narrowed for p in out):
            c.add(items.line, f"no policy for every severity {sev} ticket: add one without "
                              "category, owner or customers")
    return tuple(out)


def _policy(spec: Any, line: int, index: int, c: _Collector,
            calendars: Mapping[str, BusinessCalendar], bad_calendars: set[str],
            groups: Collection[str] | None, lists: Mapping[str, AddressSet]) -> Policy | None:
    if not isinstance(spec, LocDict):
        c.add(line, f"policy {index + 1}: must be a mapping with name, severity, calendar "
                    "and times")
        return None
    before = len(c.problems)
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        c.add(line, f"policy {index + 1}: needs a `name`")
        name = f"policy-{index + 1}"
    for k in spec:
        if k not in _POLICY_KEYS:
            c.add(spec.line_of(k), f"policy {name}: unknown key {k!r} (expected "
                                   f"{', '.join(sorted(_POLICY_KEYS))})")
    sev = _listed(spec, "severity")
    if not sev or any(isinstance(s, bool) or s not in SEVERITIES for s in sev):
        c.add(spec.line_of("severity"), f"policy {name}: severity must be 1, 2, 3 or a "
                                        f"list of them (got {spec.get('severity')!r})")
    cats = _listed(spec, "category")
    for x in cats:
        if x not in CATEGORIES:
            c.add(spec.line_of("category"), f"policy {name}: category must be technical "
                                            f"or administrative (got {x!r})")
    owners = _listed(spec, "owner")
    for x in owners:
        if groups is not None and x not in groups:
            c.add(spec.line_of("owner"), f"policy {name}: unknown tier group {x!r} (known: "
                                         f"{', '.join(sorted(groups))})")
    customers = None
    if "customers" in spec:
        customers = lists.get(str(spec["customers"]))
        if customers is None:
            c.add(spec.line_of("customers"), f"policy {name}: unknown list "
                  f"{spec['customers']!r} (known: {', '.join(sorted(lists)) or 'none'}; "
                  "lists are files in lists/)")
    cal_name = spec.get("calendar")
    cal = calendars.get(str(cal_name))
    if cal is None and cal_name not in bad_calendars:
        c.add(spec.line_of("calendar") if "calendar" in spec else line,
              f"policy {name}: calendar must be one of {', '.join(sorted(calendars))} "
              f"(got {cal_name!r})")
    targets: dict[str, Target | None] = dict.fromkeys(TARGETS)
    for k in TARGETS:
        if k in spec and cal is not None:
            try:
                targets[k] = parse_target(spec[k], cal)
            except ValueError as exc:
                c.add(spec.line_of(k), f"policy {name}: {k}: {exc}")
    if not any(k in spec for k in TARGETS):
        c.add(line, f"policy {name}: needs at least one of first_response, update, resolution")
    if len(c.problems) != before or cal is None:
        return None
    return Policy(name, str(spec.get("description", "")), frozenset(sev), frozenset(cats),
                  frozenset(owners), customers, cal, targets["first_response"],
                  targets["update"], targets["resolution"], f"{c.file}:{line}")


def _listed(spec: LocDict, key: str) -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
