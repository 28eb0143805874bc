"""Reading ``rules/escalation.yaml``: every problem at once, each at its file:line.

Apart from :mod:`mailflow.escalation_chain` (what the chains decide, which the
scheduler runs every tick) because validation is the larger half of the code and is
read only when the rules are loaded or checked.
"""

from __future__ import annotations

import contextlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from mailflow.classify.problems import Problem, RulesError
from mailflow.classify.yamlsource import LocDict, LocList, YamlProblem, load_located
from mailflow.escalation_chain import (
    ACTIONS,
    CHAINS,
    Action,
    EscalationConfig,
    Step,
    parse_offset,
)
from mailflow.slaclock import KINDS

_STEP_KEYS = {"name", "description", "clock", "at", "actions"}
_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


def load(rules_dir: Path, display: str | None = None) -> EscalationConfig:
    """Read ``rules_dir/escalation.yaml``; RulesError with every problem, file:line."""
    file = f"{display or rules_dir}/escalation.yaml"
    problems: list[Problem] = []

    def add(line: int, what: str) -> None:
        problems.append(Problem(file, line, what))

    try:
        data = load_located((rules_dir / "escalation.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError([Problem(file, 0, "file not found (see docs/sla.md)")]) from None
    except YamlProblem as exc:
        raise RulesError([Problem(file, exc.line, exc.what)]) from None
    except (UnicodeDecodeError, OSError, ValueError) as exc:
        raise RulesError([Problem(file, 1, f"cannot read: {exc}")]) from None
    if not isinstance(data, LocDict):
        raise RulesError([Problem(file, getattr(data, "line", 1), "escalation.yaml is a "
                                  "mapping with `chains:` (and `management:`, `late_after:`)")])
    for k in data:
        if k not in ("chains", "management", "late_after"):
            add(data.line_of(k), f"unknown key {k!r} (expected chains, management, late_after)")
    late_after = timedelta(minutes=15)
    if "late_after" in data:
        off = None
        with contextlib.suppress(ValueError):
            off = parse_offset(data["late_after"])
        if off is None or off.percent is not None or off.business <= timedelta(0):
            add(data.line_of("late_after"), f"late_after: must be a time such as 15m or 1h "
                                            f"(got {data['late_after']!r})")
        else:
            late_after = off.business
    raw_mgmt = data.get("management") or []
    management = tuple(raw_mgmt if isinstance(raw_mgmt, list) else [raw_mgmt])
    for a in management:
        if not isinstance(a, str) or not _ADDRESS.fullmatch(a):
            add(data.line_of("management"), f"management: {a!r} is not an email address")
    chains_spec = data.get("chains")
    chains: dict[str, tuple[Step, ...]] = {}
    if not isinstance(chains_spec, LocDict):
        add(data.line_of("chains") if "chains" in data else data.line,
            "chains: must map technical and administrative to lists of steps")
        chains_spec = LocDict()
    for name in chains_spec:
        if name not in CHAINS:
            add(chains_spec.line_of(name), f"unknown chain {name!r} (chains are technical "
                                           "and administrative, the two ticket categories)")
    for name in CHAINS:
        if name not in chains_spec:
            if isinstance(data.get("chains"), LocDict):
                add(chains_spec.line, f"chains: {name} is missing (write `{name}: []` for "
                                      "no automatic escalation)")
            continue
        chains[name] = _chain(name, chains_spec[name], chains_spec.line_of(name), file, add)
    # From the YAML, so that a step refused for another reason still counts here.
    uses_mgmt = any(isinstance(chain, list) and any(
        isinstance(st, dict) and isinstance(st.get("actions"), list)
        and "notify-management" in st["actions"] for st in chain)
        for chain in chains_spec.values())
    if uses_mgmt and not management:
        add(data.line, "a step notifies management, but `management:` lists no address")
    if problems:
        raise RulesError(problems)
    return EscalationConfig(chains, management, late_after)


def _chain(name: str, spec: Any, line: int, file: str, add: Any) -> tuple[Step, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, LocList):
        add(line, f"chain {name}: must be a list of steps")
        return ()
    steps: list[Step] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(spec):
        sline = spec.line_of(i)
        step_name = item.get("name") if isinstance(item, LocDict) else None
        if isinstance(step_name, str) and step_name in seen:
            add(sline, f"chain {name}: step name {step_name!r} is already used at line "
                       f"{seen[step_name]}")
            continue
        if isinstance(step_name, str):
            seen[step_name] = sline
        step = _step(name, item, sline, i, file, add)
        if step is not None:
            steps.append(step)
    return tuple(steps)


def _step(chain: str, spec: Any, line: int, index: int, file: str, add: Any) -> Step | None:
    if not isinstance(spec, LocDict):
        add(line, f"chain {chain}: step {index + 1} must be a mapping with name, clock, at, "
                  "actions")
        return None
    errors = 0

    def bad(at_line: int, what: str) -> None:
        nonlocal errors
        errors += 1
        add(at_line, what)

    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        bad(line, f"chain {chain}: step {index + 1} needs a `name`")
        name = f"step-{index + 1}"
    who = f"chain {chain}, step {name}"
    for k in spec:
        if k not in _STEP_KEYS:
            bad(spec.line_of(k), f"{who}: unknown key {k!r} (expected "
                                 f"{', '.join(sorted(_STEP_KEYS))})")
    clock = spec.get("clock")
    if clock not in KINDS:
        bad(spec.line_of("clock") if "clock" in spec else line,
            f"{who}: clock must be one of {', '.join(KINDS)} (got {clock!r})")
    offset = None
    try:
        offset = parse_offset(spec.get("at", ""))
    except ValueError as exc:
        bad(spec.line_of("at") if "at" in spec else line, f"{who}: {exc}")
    actions = _actions(spec.get("actions"), spec.line_of("actions") if "actions" in spec
                       else line, chain, who, bad)
    if errors or offset is None:
        return None
    return Step(name, str(spec.get("description", "")), str(clock), offset, actions,
                f"{file}:{line}")


def _actions(raw: Any, line: int, chain: str, who: str, bad: Any) -> tuple[Action, ...]:
    if not isinstance(raw, list) or not raw:
        bad(line, f"{who}: actions must be a non-empty list of {', '.join(ACTIONS)} or "
                  "{notify: address}")
        return ()
    out: list[Action] = []
    for item in raw:
        if isinstance(item, dict) and set(item) == {"notify"}:
            if isinstance(item["notify"], str) and _ADDRESS.fullmatch(item["notify"]):
                out.append(Action("notify", item["notify"]))
            else:
                bad(line, f"{who}: notify: {item['notify']!r} is not an email address")
        elif item in ACTIONS:
            if chain == "administrative" and item == "refer-fallback":
                bad(line, f"{who}: refer-fallback hands the ticket along the tier groups; "
                          "administrative tickets escalate through management (use "
                          "notify-management or notify-leader)")
            out.append(Action(str(item)))
        else:
            bad(line, f"{who}: unknown action {item!r} (known: {', '.join(ACTIONS)}, "
                      "{notify: address})")
    return tuple(out)
