"""Keep the last good rule set in force while administrators edit the files."""

from __future__ import annotations

import logging
from pathlib import Path

from mailflow.classify.problems import RulesError
from mailflow.classify.rulefile import load_rules
from mailflow.classify.ruleset import RuleSet

log = logging.getLogger(__name__)


def _fingerprint(rules_dir: Path) -> tuple[tuple[str, int, int], ...]:
    files = [*rules_dir.glob("*.yaml"), *rules_dir.glob("lists/*.yaml")]
    out = []
    for p in sorted(files):
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


class RulesHolder:
    """The rule set in force. ``refresh()`` is cheap (stat calls) and is called before
    each batch and on SIGHUP; a broken edit is logged with its errors and refused."""

    def __init__(self, rules_dir: Path):
        self.rules_dir = rules_dir
        self.current: RuleSet = load_rules(rules_dir)  # the daemon needs one good set
        self._seen = _fingerprint(rules_dir)
        self.last_errors: list[str] = []

    def refresh(self, force: bool = False) -> bool:
        """Reload when files changed; return True when a new rule set took effect."""
        fp = _fingerprint(self.rules_dir)
        if fp == self._seen and not force:
            return False
        self._seen = fp
        try:
            new = load_rules(self.rules_dir)
        except RulesError as exc:
            self.last_errors = [str(p) for p in exc.problems]
            for p in exc.problems:
                log.error("rules not reloaded: %s", p)
            log.error("keeping rule set %s in force", self.current.version)
            return False
        self.last_errors = []
        if new.version != self.current.version:
            log.info("rules reloaded: version %s -> %s (%d rules)",
                     self.current.version, new.version, len(new.rules))
            self.current = new
            return True
        return False
