"""Mail commands of tier groups and front-line staff (``#accept``, ``#eta 4h`` ...), pure.

Tier groups work a ticket by email only (docs/tier-commands.md). Lines at the top of
the new text of a reply, one per line, may be commands; the text after them, without
the quoted history and signature (mailflow.quoting), is the public update relayed to
the customer unless ``#internal``. A customer's reply that is just a number 1-5 (with
optional words) is a satisfaction rating.

**A bad command changes nothing.** When any command line is wrong (an unknown command,
``#eta yesterday``, a malformed duration, a group that does not exist, a reason left
out, the same command twice, or two that contradict each other), the result is
``rejected``: the caller applies *none* of the commands and relays no text, keeps the
mail on the ticket as an internal message, and mails the :func:`transcript` back, which
says line by line what was wrong. The sender corrects it and sends the whole mail
again. Half-applied mail would leave a ticket in a state nobody asked for (a typo in
``#internl`` must not relay internal notes to the customer).

This module parses only: it reads no clock (``now`` is given), knows no database and
does not decide *who* may act (mailflow.authorise does).
"""

from __future__ import annotations

import difflib
import re
import textwrap
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import TypedDict

from mailflow.quoting import split_reply
from mailflow.rating import Rating, parse_rating
from mailflow.timewords import TimeProblem, format_when, parse_when


class Status(StrEnum):
    IN_PROGRESS = "in-progress"
    WAITING_ON_CUSTOMER = "waiting-on-customer"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class _Line:
    line: int  # 1-based line number in the new text of the reply
    written: str  # the command line as the sender wrote it


@dataclass(frozen=True)
class Accept(_Line):
    """The group takes the ticket (stops its time-to-accept clock)."""


@dataclass(frozen=True)
class Eta(_Line):
    """Expected resolution."""

    due: datetime


@dataclass(frozen=True)
class NextUpdate(_Line):
    """When the group will next say something, at the latest."""

    due: datetime


@dataclass(frozen=True)
class SetStatus(_Line):
    status: Status


@dataclass(frozen=True)
class Refer(_Line):
    group: str
    reason: str


@dataclass(frozen=True)
class SetSeverity(_Line):
    severity: int
    reason: str


@dataclass(frozen=True)
class Internal(_Line):
    """Nothing of this mail goes to the customer."""


@dataclass(frozen=True)
class Cause(_Line):
    text: str


@dataclass(frozen=True)
class Prevention(_Line):
    text: str


@dataclass(frozen=True)
class Escalate(_Line):
    group: str | None  # None: the front-line lead decides where
    reason: str


@dataclass(frozen=True)
class Snooze(_Line):
    until: datetime
    reason: str


Command = (Accept | Eta | NextUpdate | SetStatus | Refer | SetSeverity | Internal | Cause
           | Prevention | Escalate | Snooze)


@dataclass(frozen=True)
class CommandError(_Line):
    reason: str


@dataclass(frozen=True)
class ParsedReply:
    commands: tuple[Command, ...]
    errors: tuple[CommandError, ...]
    public_text: str  # after the commands; no quoted history, no signature
    rating: Rating | None = None
    tz_name: str = "UTC"  # for the transcript's times
    now: datetime | None = field(default=None, compare=False)

    @property
    def rejected(self) -> bool:
        """Some command is bad: apply none of them, relay nothing."""
        return bool(self.errors)

    @property
    def has_commands(self) -> bool:
        return bool(self.commands or self.errors)

    @property
    def internal(self) -> bool:
        return any(isinstance(c, Internal) for c in self.commands)

    @property
    def to_apply(self) -> tuple[Command, ...]:
        """What the caller applies: every command, or nothing when rejected."""
        return () if self.rejected else self.commands

    @property
    def relay_text(self) -> str:
        """The public update for the customer ("" when there is none to relay)."""
        return "" if self.rejected or self.internal else self.public_text

    @property
    def accepted_without_time(self) -> bool:
        """``#accept`` with neither ``#eta`` nor ``#next-update``: remind the group."""
        kinds = {type(c) for c in self.to_apply}
        return Accept in kinds and not kinds & {Eta, NextUpdate}

    def customer_notice(self) -> str | None:
        """Which status mail (template kind) the customer gets for this mail, if any.

        One mail per reply, the most telling: a hand-off, then resolution, acceptance,
        a new expected time, else the relayed text. Nothing when rejected or #internal.
        """
        if self.rejected or self.internal:
            return None
        kinds = {type(c) for c in self.commands}
        if Refer in kinds or any(isinstance(c, Escalate) and c.group for c in self.commands):
            return "status-referred"
        if any(isinstance(c, SetStatus) and c.status is Status.RESOLVED for c in self.commands):
            return "status-resolved"
        if Accept in kinds:
            return "status-accepted"
        if Eta in kinds:
            return "status-eta-changed"
        return "status-update" if self.public_text else None


NAMES = ("accept", "eta", "next-update", "status", "refer", "severity", "internal", "cause",
         "prevention", "escalate", "snooze")
# "#eta 4h", also "#ETA: 4h"; any "#word" line at the top is a command (a mistyped one
# is an error, never text relayed to the customer).
_COMMAND_LINE = re.compile(r"^#([A-Za-z][\w-]*)\s*:?\s*(.*)$")
_INVISIBLE = str.maketrans({"\xa0": " ", "\u200b": None, "\ufeff": None, "\u2009": " "})
# Which commands contradict each other in one mail (the later line gets the error).
_CONFLICTS = {
    (Refer, Escalate), (Accept, Refer), (Accept, Escalate), (Snooze, Refer),
    (Snooze, Escalate),
}


class _At(TypedDict):
    """Where a command was written: every command's first two fields."""

    line: int
    written: str


class _Bad(Exception):
    pass


def parse_reply(text: str, now: datetime, tz: tzinfo, groups: Collection[str]) -> ParsedReply:
    """Commands at the top of a reply's new text, their errors, and the public text.

    ``text`` is the plain-text body (quoted history and signature are removed here);
    ``now`` is aware; times without a zone are read in ``tz``; ``groups`` are the known
    group names (``frontline`` included).
    """
    new = split_reply(text.translate(_INVISIBLE)).new
    lines = new.split("\n")
    commands: list[Command] = []
    errors: list[CommandError] = []
    i = 0
    while i < len(lines):
        raw = lines[i].strip()
        if not raw:
            i += 1
            continue
        m = _COMMAND_LINE.match(raw)
        if not m:
            break
        try:
            cmd = _command(m.group(1).lower().replace("_", "-"), (m.group(2) or "").strip(),
                           i + 1, raw, now, tz, groups)
            _check_combination(cmd, commands)
            commands.append(cmd)
        except _Bad as exc:
            errors.append(CommandError(i + 1, raw, str(exc)))
        i += 1
    public = "\n".join(lines[i:]).strip()
    rating = None if (commands or errors) else parse_rating(public)
    return ParsedReply(tuple(commands), tuple(errors), public, rating,
                       getattr(tz, "key", None) or str(tz), now)


def _command(name: str, arg: str, line: int, raw: str, now: datetime, tz: tzinfo,
             groups: Collection[str]) -> Command:
    at: _At = {"line": line, "written": raw}
    if name in ("accept", "internal"):
        if arg:
            raise _Bad(f"#{name} takes nothing after it (write text below the commands)")
        return Accept(**at) if name == "accept" else Internal(**at)
    if name in ("eta", "next-update"):
        if not arg:
            raise _Bad(f"#{name} needs a time: 4h, 2d, tomorrow 10:00 or 2026-12-01 15:00")
        due, rest = _when(arg, now, tz)
        if rest:
            raise _Bad(f"unexpected {rest!r} after the time (write text below the commands)")
        return Eta(**at, due=due) if name == "eta" else NextUpdate(**at, due=due)
    if name == "status":
        value = re.sub(r"[\s_]+", "-", arg.lower())
        if value not in {s.value for s in Status}:
            raise _Bad(f"#status takes one of {', '.join(s.value for s in Status)} "
                       f"(got {arg!r})" if arg else
                       f"#status needs one of {', '.join(s.value for s in Status)}")
        return SetStatus(**at, status=Status(value))
    if name == "refer":
        group, reason = _first(arg)
        _known_group(group.lower(), groups, "#refer needs a group and a reason")
        return Refer(**at, group=group.lower(), reason=_reason(reason, "#refer GROUP"))
    if name == "severity":
        level, reason = _first(arg)
        if level not in ("1", "2", "3"):
            raise _Bad(f"#severity takes 1, 2 or 3 and a reason (got {level!r})" if level
                       else "#severity needs 1, 2 or 3 and a reason")
        return SetSeverity(**at, severity=int(level), reason=_reason(reason, "#severity N"))
    if name in ("cause", "prevention"):
        if not arg:
            raise _Bad(f"#{name} needs a text (it is kept for the escalation review)")
        return Cause(**at, text=arg) if name == "cause" else Prevention(**at, text=arg)
    if name == "escalate":
        first, rest = _first(arg)
        if first.lower() in groups:
            return Escalate(**at, group=first.lower(), reason=_reason(rest, "#escalate GROUP"))
        return Escalate(**at, group=None, reason=_reason(arg, "#escalate"))
    if name == "snooze":
        if not arg:
            raise _Bad("#snooze needs a time and a reason: #snooze 1d waiting for the part")
        until, reason = _when(arg, now, tz)
        return Snooze(**at, until=until, reason=_reason(reason, "#snooze TIME"))
    raise _Bad(_unknown(name))


def _first(arg: str) -> tuple[str, str]:
    """The first word and the rest (tabs count as spaces)."""
    parts = arg.split(None, 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (arg.strip(), "")


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, NAMES, n=1)
    hint = f"did you mean #{close[0]}? " if close else ""
    return f"unknown command #{name} ({hint}known: {', '.join('#' + n for n in NAMES)})"


def _known_group(group: str, groups: Collection[str], missing: str) -> None:
    if not group:
        raise _Bad(missing)
    if group not in groups:
        raise _Bad(f"unknown group {group!r} (known: {', '.join(sorted(groups))})")


def _reason(text: str, what: str) -> str:
    if not text.strip():
        raise _Bad(f"{what} needs a reason after it (it is kept on the ticket)")
    return text.strip()


def _when(arg: str, now: datetime, tz: tzinfo) -> tuple[datetime, str]:
    """A time at the start of ``arg`` (two words, else one) and the rest of it."""
    words = arg.split()
    problem: TimeProblem | None = None
    for n in (2, 1):
        if len(words) < n:
            continue
        try:
            due = parse_when(" ".join(words[:n]), now, tz)
        except TimeProblem as exc:
            problem = problem if problem and problem.definite else exc
            continue
        return due, " ".join(words[n:])
    assert problem is not None
    raise _Bad(str(problem))


def _check_combination(cmd: Command, earlier: list[Command]) -> None:
    for e in earlier:
        if type(e) is type(cmd):
            raise _Bad(f"#{_name(cmd)} is given twice (also on line {e.line}): give it once")
        pair = (type(e), type(cmd))
        if pair in _CONFLICTS or pair[::-1] in _CONFLICTS:
            raise _Bad(f"#{_name(cmd)} contradicts #{_name(e)} on line {e.line}")
        resolved = [c for c in (e, cmd) if isinstance(c, SetStatus)
                    and c.status is Status.RESOLVED]
        if resolved and isinstance(e if resolved[0] is cmd else cmd,
                                   Refer | Escalate | Snooze):
            raise _Bad(f"#{_name(cmd)} contradicts #{_name(e)} on line {e.line}")


def _name(cmd: Command) -> str:
    return cmd.written.split()[0].lstrip("#").lower()


def describe(cmd: Command, tz_name: str = "UTC") -> str:
    """What applying a command does, in a few words (for transcripts and trails)."""
    match cmd:
        case Accept():
            return "accepted"
        case Eta(due=due):
            return f"expected resolution {format_when(due, tz_name)}"
        case NextUpdate(due=due):
            return f"next update at the latest {format_when(due, tz_name)}"
        case SetStatus(status=s):
            return f"status {s.value}"
        case Refer(group=g, reason=r):
            return f"referred to {g}: {r}"
        case SetSeverity(severity=s, reason=r):
            return f"severity {s}: {r}"
        case Internal():
            return "nothing of this mail goes to the customer"
        case Cause(text=t):
            return f"cause recorded: {t}"
        case Prevention(text=t):
            return f"prevention recorded: {t}"
        case Escalate(group=g, reason=r):
            return f"escalated{f' to {g}' if g else ''}: {r}"
        case Snooze(until=u, reason=r):
            return f"snoozed until {format_when(u, tz_name)}: {r}"
    raise AssertionError(cmd)  # pragma: no cover


def transcript(result: ParsedReply) -> str:
    """The short text mailed back to whoever sent commands: what was applied, what was
    not and why, and what happened to the text below the commands."""
    rows: list[tuple[int, str, str]] = [
        (c.line, c.written,
         ("fine, but not applied: " if result.rejected else "") + describe(c, result.tz_name))
        for c in result.commands
    ]
    rows += [(e.line, e.written, f"NOT APPLIED: {e.reason}") for e in result.errors]
    rows.sort()
    width = min(max((len(w) for _, w, _ in rows), default=0), 32)
    body = [f"  {w:<{width}}  {what}" for _, w, what in rows]
    if not rows:
        return "Your mail held no commands.\n"
    if result.rejected:
        head = ("Nothing was applied: a command below is wrong, and a mail with a wrong "
                "command changes nothing. Correct it and send the whole mail again.")
        tail = "Your text was not relayed to the customer either."
    else:
        head = "Applied:"
        if result.internal:
            tail = "Your text was kept on the ticket and not sent to the customer (#internal)."
        elif result.public_text:
            tail = "Your text below the commands was relayed to the customer."
        else:
            tail = "There was no text below the commands, so the customer got no update."
    return "\n".join([textwrap.fill(head, 78), "", *body, "", textwrap.fill(tail, 78)]) + "\n"


__all__ = [
    "Accept", "Cause", "Command", "CommandError", "Escalate", "Eta", "Internal", "NextUpdate",
    "ParsedReply", "Prevention", "Rating", "Refer", "SetSeverity", "SetStatus", "Snooze",
    "Status", "describe", "parse_rating", "parse_reply", "transcript",
]
