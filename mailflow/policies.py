"""The service levels, escalation chains and tier groups in force.

``sla.yaml``, ``escalation.yaml`` and ``groups.yaml`` are read again when a file in the
rules folder changes (a ``stat`` per look); a broken edit keeps the last good set and
says so once, as the rule files do. Ingest (what an acknowledgment promises), the
scheduler and the CLI read the same set: one source of truth for every promise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from mailflow.classify.groups import GroupsConfig, load_groups
from mailflow.classify.problems import RulesError
from mailflow.escalation_chain import EscalationConfig, load_escalation
from mailflow.sla_policy import SlaConfig, load_sla

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policies:
    sla: SlaConfig
    escalation: EscalationConfig
    groups: GroupsConfig

    def accept_within(self) -> dict[str, dict[int, timedelta]]:
        return {name: {sev: o.accept for sev, o in g.objectives.items()}
                for name, g in self.groups.groups.items()}


def _fingerprint(rules_dir: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for p in sorted([*rules_dir.glob("*.yaml"), *rules_dir.glob("lists/*.yaml")]):
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


class PoliciesHolder:
    """sla.yaml, escalation.yaml and groups.yaml in force; a broken edit keeps the last
    good set (said once in the log), as the rules do."""

    def __init__(self, rules_dir: Path, tz: Any):
        self.rules_dir = rules_dir
        self.tz = tz
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self.current: Policies | None = None
        self.refresh()

    def refresh(self) -> Policies | None:
        fp = _fingerprint(self.rules_dir)
        if fp == self._seen:
            return self.current
        self._seen = fp
        try:
            self.current = Policies(load_sla(self.rules_dir, tz=self.tz),
                                    load_escalation(self.rules_dir),
                                    load_groups(self.rules_dir))
        except RulesError as exc:
            what = "; ".join(str(p) for p in exc.problems)
            if self.current is None:
                log.error("no service levels in force, nothing escalates: %s", what)
            else:
                log.error("service levels not reloaded (%s); keeping the last good ones", what)
        return self.current
