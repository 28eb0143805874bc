"""Rule files: load and validate every file, reporting every problem at once with its
``file:line``, into a :class:`~mailflow.classify.ruleset.RuleSet`.

A broken file is refused as a whole (the daemon keeps the last good rules), so the
problems are collected rather than raised one by one.
"""

from __future__ import annotations

import hashlib
import re
from datetime import time
from pathlib import Path
from typing import Any, cast

from mailflow.classify.conditions import (
    AddressSet,
    All,
    Always,
    AnyOf,
    AttachmentIs,
    BusinessHours,
    Condition,
    HeaderIs,
    Not,
    Sender,
    SentTo,
    TextIn,
    TextMatcher,
    contains_matcher,
    regex_matcher,
    words_matcher,
)
from mailflow.classify.groups import FRONTLINE, Group, read_groups
from mailflow.classify.lists import read_lists
from mailflow.classify.problems import Collector as _Collector
from mailflow.classify.problems import Problem, RulesError
from mailflow.classify.ruleset import CATEGORIES, Rule, RuleSet
from mailflow.classify.yamlsource import LocDict, LocList, YamlProblem, load_located

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_RULE_KEYS = {"name", "description", "when", "set", "stop"}
_SET_KEYS = {"severity", "category", "owner", "tags"}
_FILE_KEYS = {"defaults", "business_hours", "rules"}
# Files in rules_dir that are not rule files: each has its own loader (sla_policy.py,
# escalation_chain.py) and its own format.
NOT_RULE_FILES = frozenset({"groups.yaml", "sla.yaml", "escalation.yaml"})



class _Builder:
    """Turns one rule file's located YAML into Rule objects, collecting problems."""

    def __init__(self, c: _Collector, lists: dict[str, AddressSet], groups: dict[str, Group],
                 hours: BusinessHours):
        self.c = c
        self.lists = lists
        self.groups = groups
        self.hours = hours

    def text(self, spec: Any, line: int, what: str) -> TextMatcher | None:
        if isinstance(spec, str):
            return words_matcher(spec.split()) if spec.strip() else self._bad(line, what)
        if isinstance(spec, list):
            if not spec or not all(isinstance(w, str) and w.strip() for w in spec):
                return self._bad(line, f"{what}: a word list must hold non-empty text")
            return words_matcher(spec)
        if isinstance(spec, dict) and len(spec) == 1:
            (kind, value), = spec.items()
            if kind == "words":
                return self.text(value if isinstance(value, list) else [value], line, what)
            if kind == "contains" and isinstance(value, str) and value:
                return contains_matcher(value)
            if kind == "regex" and isinstance(value, str):
                try:
                    return regex_matcher(value)
                except re.error as exc:
                    return self._bad(line, f"{what}: invalid regular expression {value!r}: {exc}")
        return self._bad(line, f"{what}: expected text, a word list, or one of "
                               "{words: [...]}, {regex: ...}, {contains: ...} (got "
                               f"{_show(spec)})")

    def _bad(self, line: int, what: str) -> None:
        self.c.add(line, what)
        return None

    def addresses(self, spec: Any, line: int, what: str) -> AddressSet | None:
        if isinstance(spec, str):
            spec = LocDict({"domain": spec[1:]} if spec.startswith("@") else {"address": spec})
        if isinstance(spec, list):
            addrs = [s.lower() for s in spec if isinstance(s, str) and not s.startswith("@")]
            doms = [s[1:].lower() for s in spec if isinstance(s, str) and s.startswith("@")]
            if len(addrs) + len(doms) != len(spec) or not spec:
                return self._bad(line, f"{what}: list entries must be addresses or @domains")
            return AddressSet(", ".join(map(str, spec)), frozenset(addrs), frozenset(doms))
        if not isinstance(spec, dict) or len(spec) != 1:
            return self._bad(line, f"{what}: expected an address, @domain, "
                                   f"{{domain: ...}} or {{list: NAME}} (got {_show(spec)})")
        (kind, value), = spec.items()
        if kind == "list":
            if value not in self.lists:
                known = ", ".join(sorted(self.lists)) or "none defined in lists/"
                return self._bad(line, f"{what}: unknown list {value!r} (known: {known})")
            return self.lists[value]
        if kind in ("address", "domain") and isinstance(value, str) and value:
            v = value.lower().lstrip("@")
            if kind == "address":
                return AddressSet(v, frozenset({v}), frozenset())
            return AddressSet(f"@{v}", frozenset(), frozenset({v}))
        return self._bad(line, f"{what}: unknown form {kind!r} (expected address, domain, list)")

    def condition(self, spec: Any, line: int) -> Condition | None:
        if not isinstance(spec, dict) or not spec:
            return self._bad(line, f"a condition must be a mapping such as `subject: ...` "
                                   f"(got {_show(spec)})")
        parts: list[Condition] = []
        for key, value in spec.items():
            kline = spec.line_of(key) if isinstance(spec, LocDict) else line
            cond = self._one(key, value, kline)
            if cond is not None:
                parts.append(cond)
        if len(parts) != len(spec):
            return None
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def _one(self, key: str, value: Any, line: int) -> Condition | None:
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                return self._bad(line, f"{key}: expects a non-empty list of conditions")
            subs = [self.condition(v, value.line_of(i) if isinstance(value, LocList) else line)
                    for i, v in enumerate(value)]
            if any(s is None for s in subs):
                return None
            done = tuple(s for s in subs if s is not None)
            return All(done) if key == "all" else AnyOf(done)
        if key == "not":
            sub = self.condition(value, getattr(value, "line", line))
            return Not(sub) if sub is not None else None
        if key in ("subject", "body"):
            m = self.text(value, line, key)
            return TextIn(key, m) if m else None
        if key in ("sender", "sender_domain"):
            if key == "sender_domain" and isinstance(value, str):
                value = "@" + value.lstrip("@")
            a = self.addresses(value, line, key)
            return Sender(a) if a else None
        if key == "to":
            a = self.addresses(value, line, key)
            return SentTo(a) if a else None
        if key == "header":
            return self._header(value, line)
        if key == "attachment":
            return self._attachment(value, line)
        if key == "business_hours":
            if not isinstance(value, bool):
                return self._bad(line, f"business_hours: must be true or false (got "
                                       f"{_show(value)})")
            return BusinessHours(value, self.hours.days, self.hours.start, self.hours.end)
        known = ("subject, body, sender, sender_domain, to, header, attachment, "
                 "business_hours, all, any, not")
        return self._bad(line, f"unknown condition {key!r} (known: {known})")

    def _header(self, value: Any, line: int) -> Condition | None:
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return self._bad(line, "header: expects {name: Header-Name, regex|words|contains: "
                                   "..., or present: true|false}")
        extra = set(value) - {"name", "regex", "words", "contains", "present"}
        if extra:
            return self._bad(line, f"header: unknown key {sorted(extra)[0]!r}")
        tests = [k for k in ("regex", "words", "contains") if k in value]
        if len(tests) > 1 or (tests and "present" in value):
            return self._bad(line, "header: give one of regex, words, contains or present")
        if tests:
            m = self.text({tests[0]: value[tests[0]]}, line, f"header {value['name']}")
            return HeaderIs(value["name"], m, True) if m else None
        present = value.get("present", True)
        if not isinstance(present, bool):
            return self._bad(line, "header: present must be true or false")
        return HeaderIs(value["name"], None, present)

    def _attachment(self, value: Any, line: int) -> Condition | None:
        if isinstance(value, bool):
            return AttachmentIs(None, None, value)
        if isinstance(value, dict) and value and set(value) <= {"type", "name"} and all(
            isinstance(v, str) and v for v in value.values()
        ):
            return AttachmentIs(value.get("type"), value.get("name"))
        return self._bad(line, "attachment: expects true, false, or {type: ..., name: ...}")

    def rule(self, spec: Any, line: int, index: int) -> Rule | None:
        c = self.c
        if not isinstance(spec, dict):
            return self._bad(line, f"rule {index + 1}: must be a mapping with name, when, set")
        spec = cast(LocDict, spec)  # the loader's mappings carry their lines
        before = len(c.problems)
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            c.add(line, f"rule {index + 1}: needs a `name`")
            name = f"rule-{index + 1}"
        for k in spec:
            if k not in _RULE_KEYS:
                c.add(spec.line_of(k), f"rule {name}: unknown key {k!r} (expected "
                                       f"{', '.join(sorted(_RULE_KEYS))})")
        when: Condition | None = Always()
        if "when" in spec:
            when = self.condition(spec["when"], spec.line_of("when"))
        actions = spec.get("set")
        sev = cat = owner = None
        tags: tuple[str, ...] = ()
        if not isinstance(actions, dict):
            c.add(spec.line_of("set") if "set" in spec else line,
                  f"rule {name}: needs a `set:` mapping (severity, category, owner, tags)")
        else:
            actions = cast(LocDict, actions)
            for k in actions:
                if k not in _SET_KEYS:
                    c.add(actions.line_of(k), f"rule {name}: cannot set {k!r} (can set "
                                              f"{', '.join(sorted(_SET_KEYS))})")
            if "severity" in actions:
                sev = actions["severity"]
                if not isinstance(sev, int) or isinstance(sev, bool) or sev not in (1, 2, 3):
                    c.add(actions.line_of("severity"),
                          f"rule {name}: severity must be 1, 2 or 3 (got {_show(sev)})")
                    sev = None
            if "category" in actions:
                cat = actions["category"]
                if cat not in CATEGORIES:
                    c.add(actions.line_of("category"), f"rule {name}: category must be "
                          f"technical or administrative (got {_show(cat)})")
                    cat = None
            if "owner" in actions:
                owner = actions["owner"]
                if owner not in self.groups:
                    c.add(actions.line_of("owner"), f"rule {name}: unknown tier group "
                          f"{owner!r} (known: {', '.join(sorted(self.groups))}; groups are "
                          "defined in groups.yaml)")
                    owner = None
            if "tags" in actions:
                raw = actions["tags"]
                raw = [raw] if isinstance(raw, str) else raw
                if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
                    c.add(actions.line_of("tags"), f"rule {name}: tags must be a list of words")
                else:
                    tags = tuple(raw)
        stop = spec.get("stop", False)
        if not isinstance(stop, bool):
            c.add(spec.line_of("stop"), f"rule {name}: stop must be true or false")
        if len(c.problems) != before or when is None:
            return None
        return Rule(name, str(spec.get("description", "")), when, sev, cat, owner, tags,
                    bool(stop), f"{c.file}:{line}")


def _show(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


def _hours(spec: Any, c: _Collector, line: int) -> BusinessHours | None:
    if not isinstance(spec, dict):
        c.add(line, "business_hours: expects {days: [mon, ...], start: \"08:00\", end: \"18:00\"}")
        return None
    try:
        days_spec = spec.get("days", ["mon", "tue", "wed", "thu", "fri"])
        days = frozenset(_DAYS[str(d).lower()[:3]] for d in days_spec)
        start = time.fromisoformat(str(spec.get("start", "08:00")))
        end = time.fromisoformat(str(spec.get("end", "18:00")))
    except (KeyError, ValueError, TypeError):
        c.add(line, "business_hours: days are mon..sun, start/end are HH:MM")
        return None
    return BusinessHours(True, days, start, end)


def load_rules(rules_dir: Path, display: str | None = None) -> RuleSet:
    """Load every rule file; raise RulesError listing every problem with file:line."""
    display = display or str(rules_dir)
    problems: list[Problem] = []
    if not rules_dir.is_dir():
        raise RulesError([Problem(display, 0, "rules directory not found")])
    digest = hashlib.sha256()
    files = sorted(p for p in rules_dir.glob("*.yaml") if p.name not in NOT_RULE_FILES)
    for p in sorted([*rules_dir.glob("*.yaml"), *rules_dir.glob("lists/*.yaml")]):
        digest.update(p.relative_to(rules_dir).as_posix().encode() + b"\0" + p.read_bytes())
    lists = read_lists(rules_dir, display, problems)
    groups = read_groups(rules_dir, display, problems)
    defaults: dict[str, Any] = {"severity": 3, "category": "technical", "owner": FRONTLINE}
    default_hours = BusinessHours(True, frozenset(range(5)), time(8), time(18))
    rules: list[Rule] = []
    parsed: list[tuple[_Collector, LocDict]] = []
    hours = default_hours
    for path in files:
        c = _Collector(f"{display}/{path.name}")
        try:
            data = load_located(path.read_text(encoding="utf-8"))
        except YamlProblem as exc:
            c.add(exc.line, exc.what)
            problems.extend(c.problems)
            continue
        except UnicodeDecodeError:
            c.add(1, "the file is not UTF-8 text")
            problems.extend(c.problems)
            continue
        if data is None:
            continue
        if not isinstance(data, LocDict):
            c.add(getattr(data, "line", 1), "a rule file is a mapping with `rules:` (and "
                  "optionally `defaults:` and `business_hours:`)")
            problems.extend(c.problems)
            continue
        for k in data:
            if k not in _FILE_KEYS:
                c.add(data.line_of(k), f"unknown key {k!r} (expected defaults, "
                                       "business_hours, rules)")
        if "business_hours" in data:
            hours = _hours(data["business_hours"], c, data.line_of("business_hours")) or hours
        if "defaults" in data:
            d = data["defaults"]
            if not isinstance(d, LocDict):
                c.add(data.line_of("defaults"), "defaults: must be a mapping")
            else:
                for k, v in d.items():
                    line = d.line_of(k)
                    if k == "severity" and (isinstance(v, bool) or v not in (1, 2, 3)):
                        c.add(line, f"defaults: severity must be 1, 2 or 3 (got {_show(v)})")
                    elif k == "category" and v not in CATEGORIES:
                        c.add(line, f"defaults: category must be technical or administrative "
                                    f"(got {_show(v)})")
                    elif k == "owner" and (not isinstance(v, str) or v not in groups):
                        c.add(line, f"defaults: unknown tier group {_show(v)}")
                    elif k not in ("severity", "category", "owner"):
                        c.add(line, f"defaults: unknown key {k!r} (expected severity, "
                                    "category, owner)")
                    else:
                        defaults[k] = v
        parsed.append((c, data))
        problems.extend(c.problems)
    names: dict[str, str] = {}
    for c, data in parsed:
        before = len(c.problems)
        b = _Builder(c, lists, groups, hours)
        items = data.get("rules", LocList())
        if items is None:
            items = LocList()
        if not isinstance(items, LocList):
            c.add(data.line_of("rules"), "rules: must be a list of rules")
        else:
            for i, spec in enumerate(items):
                rule = b.rule(spec, items.line_of(i), i)
                if rule is None:
                    continue
                if rule.name in names:
                    c.add(items.line_of(i), f"rule name {rule.name!r} is already used at "
                                            f"{names[rule.name]}")
                    continue
                names[rule.name] = rule.source
                rules.append(rule)
        problems.extend(c.problems[before:])
    if problems:
        raise RulesError(problems)
    return RuleSet(tuple(rules), defaults["severity"], defaults["category"], defaults["owner"],
                   groups, digest.hexdigest()[:12], tuple(p.name for p in files))
