"""Tier groups (``rules/groups.yaml``): who a ticket can be referred to, who may act.

Each second-tier group agrees with the help desk how a referral reaches it (its
``address``, its ``leader``), who may answer for it (``members``; the leader always
may), where a referral goes when it is not accepted in time (``fallback``), and the
service-level objectives it agreed per severity (time to accept, longest time between
updates, time to resolve). A vendor whose own system answers with its case numbers
names their form in ``external_ref``, so such replies thread even without our headers.

The front line (the help desk itself) is always the group ``frontline``; its staff are
listed under a top-level ``frontline:`` section::

    frontline:
      leader: lead@example.test
      members: [ann@example.test]
    groups:
      tier2:
        address: tier2@example.test
        description: Second-line technical support
        leader: tina@example.test
        members: [tom@example.test]
        fallback: frontline
        objectives:
          1: {accept: 30m, update: 2h, resolve: 1d}
          2: {accept: 2h, update: 8h, resolve: 3d}
          3: {accept: 1d, update: 2d, resolve: 2w}
        external_ref: 'CASE-\\d{6}'

Every key but ``address`` and ``description`` came with referrals and is optional, so a
group can still be a bare owner name. Every problem is reported at once, located.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from mailflow.classify.problems import Collector, Problem, RulesError
from mailflow.classify.yamlsource import LocDict, LocList, YamlProblem, load_located
from mailflow.config import parse_duration

FRONTLINE = "frontline"
SEVERITIES = (1, 2, 3)
OBJECTIVE_KEYS = ("accept", "update", "resolve")
_GROUP_KEYS = ("address", "description", "leader", "members", "fallback", "objectives",
               "external_ref")
_FRONTLINE_KEYS = ("leader", "members")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


@dataclass(frozen=True)
class Objectives:
    """What a group agreed for one severity: accept within, update at least every,
    resolve within."""

    accept: timedelta
    update: timedelta
    resolve: timedelta


@dataclass(frozen=True)
class Group:
    name: str
    address: str | None
    description: str
    leader: str | None = None
    # Lower-case addresses allowed to act for the group; includes the leader.
    members: frozenset[str] = frozenset()
    fallback: str | None = None
    objectives: Mapping[int, Objectives] = field(default_factory=dict)
    # Compiled with word-like boundaries added (see _external_ref).
    external_ref: re.Pattern[str] | None = None
    source: str = ""  # file:line of the definition

    def may_act(self, address: str) -> bool:
        return address.strip().lower() in self.members

    def objectives_for(self, severity: int) -> Objectives | None:
        return self.objectives.get(severity)

    def case_number(self, text: str) -> str | None:
        """The group's own case number in a subject or text, if it names one."""
        if self.external_ref is None:
            return None
        m = self.external_ref.search(text)
        return m.group(0) if m else None

    def from_group_domain(self, address: str) -> bool:
        """The address is at the domain of the group's mailbox (or a subdomain)."""
        if not self.address:
            return False
        want = self.address.rpartition("@")[2].lower()
        have = address.strip().lower().rpartition("@")[2]
        return bool(have) and (have == want or have.endswith("." + want))


@dataclass(frozen=True)
class GroupsConfig:
    """Every group by name, ``frontline`` included (its staff from ``frontline:``)."""

    groups: Mapping[str, Group]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.groups)

    @property
    def frontline(self) -> Group:
        return self.groups[FRONTLINE]

    def get(self, name: str | None) -> Group | None:
        return self.groups.get(name) if name else None

    def groups_of(self, address: str) -> tuple[str, ...]:
        """Names of the groups the address may act for, in name order."""
        return tuple(sorted(n for n, g in self.groups.items() if g.may_act(address)))

    def case_reference(self, sender: str, *texts: str) -> tuple[str, str] | None:
        """(group, case number) when mail from a group's own domain names one of its
        case numbers (subject first, then text): how a vendor's reply threads when its
        system dropped our headers. Whether the number is the one recorded on the
        ticket is for the caller to check."""
        for name in sorted(self.groups):
            g = self.groups[name]
            if g.external_ref is None or not g.from_group_domain(sender):
                continue
            for text in texts:
                found = g.case_number(text)
                if found:
                    return name, found
        return None

    def fallback_chain(self, name: str) -> tuple[str, ...]:
        """Where a referral goes, in order, when each group in turn does not accept."""
        chain: list[str] = []
        g = self.groups.get(name)
        while g is not None and g.fallback and g.fallback not in chain and g.fallback != name:
            chain.append(g.fallback)
            g = self.groups.get(g.fallback)
        return tuple(chain)


def frontline_only() -> GroupsConfig:
    return GroupsConfig({FRONTLINE: _frontline(None, frozenset())})


def _frontline(leader: str | None, members: frozenset[str]) -> Group:
    return Group(FRONTLINE, None, "the help desk keeps the ticket", leader=leader,
                 members=members | ({leader} if leader else frozenset()))


def load_groups(rules_dir: Path, display: str | None = None) -> GroupsConfig:
    """Load ``groups.yaml`` alone; raise RulesError listing every problem."""
    problems: list[Problem] = []
    groups = read_groups(rules_dir, display or str(rules_dir), problems)
    if problems:
        raise RulesError(problems)
    return GroupsConfig(groups)


def read_groups(rules_dir: Path, display: str, problems: list[Problem]) -> dict[str, Group]:
    """The groups of ``rules_dir/groups.yaml`` (``frontline`` always), adding problems."""
    path = rules_dir / "groups.yaml"
    if not path.is_file():
        return {FRONTLINE: _frontline(None, frozenset())}
    c = Collector(f"{display}/groups.yaml")
    groups = _parse(path, c)
    problems.extend(c.problems)
    return groups


def _parse(path: Path, c: Collector) -> dict[str, Group]:
    frontline = {FRONTLINE: _frontline(None, frozenset())}
    try:
        data = load_located(path.read_text(encoding="utf-8"))
    except (YamlProblem, UnicodeDecodeError, OSError) as exc:
        c.add(getattr(exc, "line", 1), getattr(exc, "what", str(exc)))
        return frontline
    if data is None:
        return frontline
    if not isinstance(data, LocDict):
        c.add(getattr(data, "line", 1), "groups.yaml needs a `groups:` mapping of name: "
                                        "settings (and optionally `frontline:`)")
        return frontline
    for k in data:
        if k not in ("groups", "frontline"):
            c.add(data.line_of(k), f"unknown key {k!r} (expected groups, frontline)")
    groups = {FRONTLINE: _read_frontline(data.get("frontline"), data.line_of("frontline"), c)}
    body = data.get("groups")
    if body is None and "groups" not in data:
        c.add(data.line, "groups.yaml needs a `groups:` mapping of name: settings")
        return groups
    if body is None:
        body = _empty(data.line_of("groups"))
    if not isinstance(body, LocDict):
        c.add(data.line_of("groups"), "groups: must be a mapping of name: settings")
        return groups
    fallbacks: dict[str, tuple[str, int]] = {}
    for name, spec in body.items():
        line = body.line_of(name)
        if name == FRONTLINE:
            c.add(line, "frontline is the help desk itself: list its staff under the "
                        "top-level `frontline:` section, not under groups:")
            continue
        if not _NAME.fullmatch(name):
            c.add(line, f"group name {name!r} must be lower-case letters, digits, - or _")
            continue
        group = _read_group(name, spec, line, c)
        if group is not None:
            groups[name] = group
            if group.fallback:
                fallbacks[name] = (group.fallback, _line(spec, "fallback", line))
    _check_fallbacks(fallbacks, groups, c)
    return groups


def _empty(line: int) -> LocDict:
    out = LocDict()
    out.line, out.key_lines = line, {}
    return out


def _line(spec: Any, key: str, default: int) -> int:
    return spec.line_of(key) if isinstance(spec, LocDict) else default


def _read_frontline(spec: Any, line: int, c: Collector) -> Group:
    if spec is None:
        return _frontline(None, frozenset())
    if not isinstance(spec, LocDict):
        c.add(line, "frontline: must be a mapping with leader and members")
        return _frontline(None, frozenset())
    for k in spec:
        if k not in _FRONTLINE_KEYS:
            c.add(spec.line_of(k), f"frontline: unknown key {k!r} (expected leader, members)")
    leader = _address(spec.get("leader"), "frontline: leader", spec.line_of("leader"), c)
    members = _addresses(spec.get("members"), "frontline: members", spec, c)
    return _frontline(leader, members)


def _read_group(name: str, spec: Any, line: int, c: Collector) -> Group | None:
    spec = spec if spec is not None else _empty(line)
    if not isinstance(spec, LocDict):
        c.add(line, f"group {name}: settings must be a mapping ({', '.join(_GROUP_KEYS)})")
        return None
    for k in spec:
        if k not in _GROUP_KEYS:
            c.add(_line(spec, k, line), f"group {name}: unknown key {k!r} (expected "
                                        f"{', '.join(_GROUP_KEYS)})")
    what = f"group {name}"
    addr = _address(spec.get("address"), f"{what}: address", _line(spec, "address", line), c)
    leader = _address(spec.get("leader"), f"{what}: leader", _line(spec, "leader", line), c)
    members = _addresses(spec.get("members"), f"{what}: members", spec, c)
    fallback = spec.get("fallback")
    if fallback is not None and not isinstance(fallback, str):
        c.add(_line(spec, "fallback", line), f"{what}: fallback must be a group name")
        fallback = None
    objectives = _objectives(spec.get("objectives"), what, _line(spec, "objectives", line), c)
    ref = _external_ref(spec.get("external_ref"), what, _line(spec, "external_ref", line), c)
    if addr is None and "address" not in spec and (leader or members or objectives):
        c.add(line, f"{what}: needs an `address` to receive its referrals")
    return Group(name, addr, str(spec.get("description", "") or ""), leader=leader,
                 members=members | ({leader} if leader else frozenset()), fallback=fallback,
                 objectives=objectives, external_ref=ref, source=f"{c.file}:{line}")


def _address(value: Any, what: str, line: int, c: Collector) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value.strip()):
        c.add(line, f"{what} must be an email address (got {value!r})")
        return None
    return value.strip().lower()


def _addresses(value: Any, what: str, spec: LocDict, c: Collector) -> frozenset[str]:
    line = spec.line_of("members")
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        c.add(line, f"{what} must be a list of email addresses")
        return frozenset()
    out: set[str] = set()
    for i, v in enumerate(value):
        at = value.line_of(i) if isinstance(value, LocList) else line
        addr = _address(v, f"{what}: entry", at, c)
        if addr is not None:
            if addr in out:
                c.add(at, f"{what}: {addr} is listed twice")
            out.add(addr)
    return frozenset(out)


def _objectives(value: Any, what: str, line: int, c: Collector) -> dict[int, Objectives]:
    if value is None:
        return {}
    if not isinstance(value, LocDict):
        c.add(line, f"{what}: objectives must map each severity 1, 2, 3 to "
                    "{accept: ..., update: ..., resolve: ...}")
        return {}
    out: dict[int, Objectives] = {}
    for key, spec in value.items():
        at = value.line_of(key)
        if key not in {str(s) for s in SEVERITIES}:
            c.add(at, f"{what}: objectives: severity must be 1, 2 or 3 (got {key!r})")
            continue
        if not isinstance(spec, LocDict):
            c.add(at, f"{what}: objectives {key}: expects {{accept: 2h, update: 8h, "
                      "resolve: 3d}")
            continue
        times: dict[str, timedelta] = {}
        for k, v in spec.items():
            kat = spec.line_of(k)
            if k not in OBJECTIVE_KEYS:
                c.add(kat, f"{what}: objectives {key}: unknown key {k!r} (expected accept, "
                           "update, resolve)")
                continue
            try:
                td = parse_duration(v)
            except ValueError as exc:
                c.add(kat, f"{what}: objectives {key}: {k} {exc}")
                continue
            if td <= timedelta(0):
                c.add(kat, f"{what}: objectives {key}: {k} must be longer than zero")
                continue
            times[k] = td
        missing = [k for k in OBJECTIVE_KEYS if k not in spec]
        if missing:
            c.add(at, f"{what}: objectives {key}: missing {', '.join(missing)}")
        if len(times) == len(OBJECTIVE_KEYS):
            if times["accept"] > times["resolve"]:
                c.add(at, f"{what}: objectives {key}: accept is longer than resolve")
            out[int(key)] = Objectives(**times)
    missing_sev = [str(s) for s in SEVERITIES if str(s) not in value]
    if missing_sev:
        c.add(line, f"{what}: objectives: missing severity {', '.join(missing_sev)} "
                    "(give all of 1, 2 and 3)")
    return out


def _external_ref(value: Any, what: str, line: int, c: Collector) -> re.Pattern[str] | None:
    """Compile a group's case-number pattern, refusing patterns that would thread
    unrelated mail: ones that match nothing in particular, or any bare number."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        c.add(line, f"{what}: external_ref must be a regular expression such as "
                    "'CASE-\\d{6}'")
        return None
    try:
        plain = re.compile(value)
    except re.error as exc:
        c.add(line, f"{what}: external_ref: invalid regular expression '{value}': {exc}")
        return None
    if value.startswith("^") or value.endswith("$"):
        c.add(line, f"{what}: external_ref is searched for in subjects and text: leave out "
                    "^ and $ (mailflow keeps it from matching inside longer words)")
        return None
    if plain.fullmatch(""):
        c.add(line, f"{what}: external_ref '{value}' matches an empty text")
        return None
    if any(plain.fullmatch("1234567890"[:n] if n <= 10 else "1" * n) for n in range(1, 21)):
        c.add(line, f"{what}: external_ref '{value}' matches a bare number: include the "
                    "group's own prefix (such as 'CASE-\\d{6}') so dates and phone numbers "
                    "are not taken for case numbers")
        return None
    # Not inside a longer word or number: CASE-1234567 is not CASE-123456.
    return re.compile(rf"(?<![\w-])(?:{value})(?![\w-])", re.IGNORECASE)


def _check_fallbacks(fallbacks: dict[str, tuple[str, int]], groups: dict[str, Group],
                     c: Collector) -> None:
    """Unknown fallbacks, and cycles (each reported once, where it first closes)."""
    known = ", ".join(sorted(groups))
    for name, (target, line) in fallbacks.items():
        if target not in groups:
            c.add(line, f"group {name}: unknown fallback group {target!r} (known: {known})")
    seen: set[str] = set()
    for start in fallbacks:
        path: list[str] = []
        at = start
        while at in fallbacks and at not in path and at not in seen:
            path.append(at)
            at = fallbacks[at][0]
        if at in path:
            cycle = path[path.index(at):]
            if len(cycle) == 1:
                c.add(fallbacks[at][1], f"group {at}: falls back to itself")
            else:
                loop = " -> ".join([*cycle, at])
                c.add(fallbacks[cycle[0]][1], f"group {cycle[0]}: fallback cycle {loop} "
                                              "(a referral nobody accepts would go round)")
        seen.update(path)
