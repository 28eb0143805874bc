"""The tier groups in force for ingest, read again when ``groups.yaml`` changes.

Ingest commits a batch without the rule set it was classified with (the parse worker
had it), and a tier reply needs the groups (who may act, where referrals go). Reading
``groups.yaml`` again only when its size or modification time changed costs one
``stat`` per batch; a broken edit keeps the last good groups, as RulesHolder does.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mailflow.classify.groups import GroupsConfig, frontline_only, load_groups
from mailflow.classify.problems import RulesError

log = logging.getLogger(__name__)


class GroupsHolder:
    def __init__(self, rules_dir: Path):
        self.rules_dir = rules_dir
        self._seen: tuple[int, int] | None = None
        self.current: GroupsConfig = frontline_only()
        self.refresh()

    def refresh(self) -> GroupsConfig:
        try:
            st = (self.rules_dir / "groups.yaml").stat()
            fp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            fp = None
        if fp == self._seen:
            return self.current
        self._seen = fp
        try:
            self.current = load_groups(self.rules_dir)
        except RulesError as exc:
            log.error("groups.yaml not reloaded (%s); keeping the groups in force",
                      "; ".join(str(p) for p in exc.problems))
        return self.current
