"""Located problems in administrator-edited files: every one at once, as ``file:line``.

Shared by the rule, list and group loaders so that ``mailflow check`` reports all of
them together in one form.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


class RulesError(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class Collector:
    """Problems of one file, added as they are found."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int, what: str) -> None:
        self.problems.append(Problem(self.file, line, what))
