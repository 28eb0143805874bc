"""Named address lists (``rules/lists/NAME.yaml``) that rules refer to as ``{list: NAME}``.

A list file is a YAML list of addresses and ``@domains`` (or a mapping with an
``entries:`` list): lists of important customers belong in the rule files, where
administrators keep them, not in code.
"""

from __future__ import annotations

from pathlib import Path

from mailflow.classify.conditions import AddressSet
from mailflow.classify.problems import Collector, Problem
from mailflow.classify.yamlsource import LocDict, LocList, YamlProblem, load_located


def read_lists(rules_dir: Path, display: str, problems: list[Problem]) -> dict[str, AddressSet]:
    """Every ``lists/NAME.yaml`` as an address set named NAME, adding problems."""
    lists: dict[str, AddressSet] = {}
    folder = rules_dir / "lists"
    if not folder.is_dir():
        return lists
    for path in sorted(folder.glob("*.yaml")):
        name = path.stem
        c = Collector(f"{display}/lists/{path.name}")
        try:
            data = load_located(path.read_text(encoding="utf-8"))
        except (YamlProblem, UnicodeDecodeError, OSError) as exc:
            c.add(getattr(exc, "line", 1), getattr(exc, "what", str(exc)))
            problems.extend(c.problems)
            continue
        entries = data.get("entries") if isinstance(data, LocDict) else data
        if entries is None:
            entries = LocList()
        if not isinstance(entries, list):
            c.add(getattr(data, "line", 1),
                  "a list file is a YAML list of addresses (or has an `entries:` list)")
            problems.extend(c.problems)
            continue
        addrs, domains = set(), set()
        for i, e in enumerate(entries):
            line = entries.line_of(i) if isinstance(entries, LocList) else 1
            if not isinstance(e, str) or "@" not in e or " " in e.strip():
                c.add(line, f"entry must be an address or @domain (got {e!r})")
            elif e.startswith("@"):
                domains.add(e[1:].lower())
            else:
                addrs.add(e.lower())
        problems.extend(c.problems)
        lists[name] = AddressSet(f"list {name}", frozenset(addrs), frozenset(domains))
    return lists
