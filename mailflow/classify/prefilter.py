"""Literal prefilters for rule regexes: skip the regex when it cannot match.

Python's ``re`` scans a pattern such as ``(is|are) (down|offline)|nobody can`` from
every position of the text, about 20 us for a 1.5 KB mail body; a substring test
(``"down" in text``) takes a fraction of a microsecond. So, as RE2 and Hyperscan do,
each pattern gets a set of literal strings of which every match must contain at least
one; when none occurs in the text, the regex is not run at all.

The set is derived from the pattern's parse tree. Anything this module does not
understand makes it return no set (the regex then always runs), so a prefilter can
make a rule faster but never change its result; a property test checks exactly that.
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+: the parser is re._parser (sre_parse is its deprecated alias)
    from re import _parser as sre  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older interpreters are not supported anyway
    import sre_parse as sre

_REPEATS = {getattr(sre, n) for n in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
            if hasattr(sre, n)}
_ATOMIC = getattr(sre, "ATOMIC_GROUP", None)


class _Unsafe(Exception):
    """A construct whose literals may not appear verbatim in the text (case folding)."""


def required_literals(pattern: re.Pattern[str], min_length: int = 2) -> tuple[str, ...]:
    """Strings of which every match of ``pattern`` contains at least one; ``()`` when no
    useful set is known. Only for patterns without IGNORECASE: their literals must
    appear in the searched text exactly as written."""
    if pattern.flags & re.IGNORECASE:
        return ()
    try:
        tree = sre.parse(pattern.pattern, pattern.flags)
        found = _sequence(list(tree))
    except Exception:  # noqa: BLE001 - _Unsafe, deep nesting, an unknown parser detail:
        return ()  # no prefilter, the regex always runs, results stay right
    if not found or min(map(len, found)) < min_length:
        return ()
    return tuple(sorted(found))


def _sequence(items: list[tuple[Any, Any]]) -> frozenset[str] | None:
    """A concatenation needs every part, so any part's set is a valid requirement: keep
    the most selective one (longest shortest string, then fewest strings)."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            candidates.append(frozenset({"".join(run)}))
            run.clear()

    for op, av in items:
        if op is sre.LITERAL:
            run.append(chr(av))
            continue
        close_run()
        need = _item(op, av)
        if need:
            candidates.append(need)
    close_run()
    if not candidates:
        return None
    return max(candidates, key=lambda s: (min(map(len, s)), -len(s)))


def _item(op: Any, av: Any) -> frozenset[str] | None:
    if op is sre.SUBPATTERN:
        _group, add_flags, _del_flags, sub = av
        if add_flags & re.IGNORECASE:
            raise _Unsafe
        return _sequence(list(sub))
    if op is sre.BRANCH:
        alternatives = [_sequence(list(branch)) for branch in av[1]]
        if any(a is None for a in alternatives):
            return None  # one alternative needs nothing: neither does the whole
        return frozenset().union(*alternatives)  # type: ignore[arg-type]
    if op in _REPEATS:
        low, _high, sub = av
        return _sequence(list(sub)) if low >= 1 else None
    if _ATOMIC is not None and op is _ATOMIC:
        return _sequence(list(av))
    return None  # classes, anchors, look-arounds, back-references: no literal known
