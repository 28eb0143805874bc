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
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.businesshours import ALWAYS, BusinessCalendar, window_length
from mailflow.classify.conditions import AddressSet
from mailflow.classify.groups import read_groups
from mailflow.classify.lists import read_lists
from mailflow.classify.problems import Collector, Problem, RulesError
from mailflow.classify.yamlsource import LocDict, LocList, YamlProblem, load_located
from mailflow.sla_calendars import read_calendar

SEVERITIES = (1, 2, 3)
CATEGORIES = ("technical", "administrative")
TARGETS = ("first_response", "update", "resolution")
_POLICY_KEYS = {"name", "description", "severity", "category", "owner", "customers",
                "calendar", *TARGETS}
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


def load_sla(rules_dir: Path, display: str | None = None, tz: tzinfo | None = None,
             groups: Collection[str] | None = None,
             lists: Mapping[str, AddressSet] | None = None) -> SlaConfig:
    """Read ``rules_dir/sla.yaml``; raise RulesError listing every problem with file:line.

    ``tz`` is the zone of calendars that name none (mailflow.yaml's ``timezone``);
    ``groups`` and ``lists`` default to what groups.yaml and lists/ in ``rules_dir`` hold."""
    display = display or str(rules_dir)
    c = Collector(f"{display}/sla.yaml")
    if lists is None:
        lists = read_lists(rules_dir, display, [])  # their problems are load_rules'
    if groups is None:
        group_problems: list[Problem] = []  # load_groups reports these
        found = read_groups(rules_dir, display, group_problems)
        # A group whose definition is broken is not "unknown": check names only when
        # groups.yaml is sound.
        groups = None if group_problems else frozenset(found)
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
        cal = read_calendar(name, spec, cals.line_of(name), tz or ZoneInfo("UTC"), c)
        if cal is not None:
            calendars[name] = cal
    bad_calendars = {n for n in cals if n not in calendars}
    policies = _policies(data, c, calendars, bad_calendars, groups, lists)
    if c.problems:
        raise RulesError(c.problems)
    return SlaConfig(calendars, policies)


def _policies(data: LocDict, c: Collector, calendars: Mapping[str, BusinessCalendar],
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


def _policy(spec: Any, line: int, index: int, c: Collector,
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
