"""Classification of tickets from administrator-edited rule files (docs/rules.md)."""

from mailflow.classify.conditions import Facts
from mailflow.classify.ruleset import (
    Classification,
    Problem,
    RuleHit,
    RulesError,
    RuleSet,
    load_rules,
)

__all__ = [
    "Classification",
    "Facts",
    "Problem",
    "RuleHit",
    "RuleSet",
    "RulesError",
    "load_rules",
]
