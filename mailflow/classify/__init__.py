"""Classification of tickets from administrator-edited rule files (docs/rules.md)."""

from mailflow.classify.conditions import Facts
from mailflow.classify.groups import Group, GroupsConfig, Objectives, load_groups
from mailflow.classify.problems import Problem, RulesError
from mailflow.classify.rulefile import load_rules
from mailflow.classify.ruleset import Classification, RuleHit, RuleSet

__all__ = [
    "Classification",
    "Facts",
    "Group",
    "GroupsConfig",
    "Objectives",
    "Problem",
    "RuleHit",
    "RuleSet",
    "RulesError",
    "load_groups",
    "load_rules",
]
