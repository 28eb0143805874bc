"""Rules and their evaluation; loading them from files is :mod:`.rulefile`.

Semantics (docs/rules.md): files in name order, rules top to bottom; severity takes
the most severe (lowest number) of all matching rules; category and owner take the
first matching rule that sets them; tags add up; ``stop: true`` ends evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailflow.classify.conditions import (
    Condition,
    Facts,
)
from mailflow.classify.groups import Group, GroupsConfig
from mailflow.classify.lists import read_lists as _read_lists  # noqa: F401  (sla_policy.py)

CATEGORIES = ("technical", "administrative")
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_RULE_KEYS = {"name", "description", "when", "set", "stop"}
_SET_KEYS = {"severity", "category", "owner", "tags"}
_FILE_KEYS = {"defaults", "business_hours", "rules"}
# Files in rules_dir that are not rule files: each has its own loader (sla_policy.py,
# escalation_chain.py) and its own format.
NOT_RULE_FILES = frozenset({"groups.yaml", "sla.yaml", "escalation.yaml"})


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    when: Condition
    severity: int | None
    category: str | None
    owner: str | None
    tags: tuple[str, ...]
    stop: bool
    source: str  # file:line, for traces


@dataclass(frozen=True)
class RuleHit:
    rule: str
    matched: bool
    why: str


@dataclass(frozen=True)
class Classification:
    severity: int
    category: str
    owner_group: str
    tags: tuple[str, ...]
    matched: tuple[str, ...]
    trace: tuple[RuleHit, ...]
    version: str


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    default_severity: int
    default_category: str
    default_owner: str
    groups: dict[str, Group]
    version: str
    files: tuple[str, ...] = field(default=())

    @property
    def cache_key(self) -> str:
        """The version plus the defaults, which each mailbox may set differently."""
        return (f"{self.version}/{self.default_severity}/{self.default_category}/"
                f"{self.default_owner}")

    @property
    def tiers(self) -> GroupsConfig:
        """The groups with their members and objectives, for referrals and commands."""
        return GroupsConfig(self.groups)

    def evaluate(self, facts: Facts, trace: bool = True) -> Classification:
        """``trace=False`` skips the per-rule record that only ``rules test`` shows: the
        ingest path classifies every message and has no use for it."""
        severity: int | None = None
        category: str | None = None
        owner: str | None = None
        tags: list[str] = []
        matched: list[str] = []
        hits: list[RuleHit] = []
        for rule in self.rules:
            ok, why = rule.when.test(facts)
            if trace:
                hits.append(RuleHit(rule.name, ok, why))
            if not ok:
                continue
            matched.append(rule.name)
            if rule.severity is not None:
                severity = rule.severity if severity is None else min(severity, rule.severity)
            category = category or rule.category
            owner = owner or rule.owner
            tags.extend(t for t in rule.tags if t not in tags)
            if rule.stop:
                break
        return Classification(
            severity=severity if severity is not None else self.default_severity,
            category=category or self.default_category,
            owner_group=owner or self.default_owner,
            tags=tuple(tags),
            matched=tuple(matched),
            trace=tuple(hits),
            version=self.version,
        )
