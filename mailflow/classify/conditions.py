"""Rule conditions: small typed classes built once from YAML, each able to say why.

Every class's docstring shows the YAML it accepts (docs/rules.md is the full
reference). Patterns are compiled when the rule file is loaded, never per message.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from typing import Protocol

from mailflow.businesshours import BusinessCalendar, Window, is_open, weekly_hours
from mailflow.classify.prefilter import required_literals
from mailflow.parse import AttachmentInfo, Incoming


@dataclass(frozen=True)
class Facts:
    """What conditions look at, extracted from one message once."""

    sender: str
    sender_domain: str
    recipients: tuple[str, ...]
    subject: str
    body: str
    # Lower-cased once per message: matching lower-cased text with case-sensitive
    # patterns is 3-15x faster in Python's re than IGNORECASE on the original.
    subject_lower: str
    body_lower: str
    header: Callable[[str], str | None]
    attachments: tuple[AttachmentInfo, ...]
    local_time: datetime

    @classmethod
    def of(cls, msg: Incoming, local_time: datetime) -> Facts:
        return cls(
            sender=msg.from_addr,
            sender_domain=msg.from_addr.rpartition("@")[2],
            recipients=tuple(dict.fromkeys(msg.recipients)),
            subject=msg.subject,
            body=msg.new_text,
            subject_lower=msg.subject.lower(),
            body_lower=msg.new_text.lower(),
            header=msg.header,
            attachments=msg.attachments,
            local_time=local_time,
        )


class Condition(Protocol):
    def test(self, facts: Facts) -> tuple[bool, str]:
        """(matched, why) - why is shown by ``mailflow rules test``."""
        ...


@dataclass(frozen=True)
class TextMatcher:
    """``"words here"`` | ``{words: [down, outage]}`` | ``{regex: "disk (full|dead)"}``
    | ``{contains: "exact phrase"}``; always case-insensitive.

    Patterns run on lower-cased text; ``needles`` (for word lists) are substrings of
    which at least one must occur, checked before any regex runs."""

    pattern: re.Pattern[str]
    shown: str
    needles: tuple[str, ...] = ()

    def search(self, lowered: str) -> str | None:
        """Search text that the caller already lower-cased."""
        if self.needles and not any(n in lowered for n in self.needles):
            return None
        m = self.pattern.search(lowered)
        return m.group(0) if m else None


# Escapes whose meaning changes when lower-cased (\D vs \d ...): such patterns keep
# IGNORECASE on lower-cased text instead of being lower-cased themselves.
_CASE_ESCAPE = re.compile(r"\\[A-Z]")


def regex_matcher(source: str) -> TextMatcher:
    """Compile an administrator's regex; raises re.error for the loader to report."""
    re.compile(source, re.IGNORECASE)  # validate as written
    if _CASE_ESCAPE.search(source):
        return TextMatcher(re.compile(source, re.IGNORECASE), f"/{source}/")
    pattern = re.compile(source.lower())
    return TextMatcher(pattern, f"/{source}/", required_literals(pattern))


def contains_matcher(phrase: str) -> TextMatcher:
    low = phrase.lower()
    return TextMatcher(re.compile(re.escape(low)), repr(phrase), (low,))


def words_matcher(words: list[str]) -> TextMatcher:
    lows = tuple(w.strip().lower() for w in words if w.strip())
    alts = "|".join(re.escape(w) for w in lows)
    return TextMatcher(re.compile(rf"(?<!\w)(?:{alts})(?!\w)"), f"words {', '.join(words)}",
                       lows)


@dataclass(frozen=True)
class AddressSet:
    """A named list (``lists/vip.yaml``) or inline entries: ``ann@x.test`` or ``@x.test``."""

    name: str
    addresses: frozenset[str]
    domains: frozenset[str]
    # Entries with shell-style wildcards ("*@x.test"), found once here rather than by
    # scanning a list of hundreds of addresses for every message.
    wildcards: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "wildcards",
                           tuple(sorted(a for a in self.addresses if "*" in a)))

    def contains(self, addr: str) -> bool:
        domain = addr.rpartition("@")[2]
        if addr in self.addresses or domain in self.domains:
            return True
        # Subdomains of a listed domain count: @bigcorp.example covers eu.bigcorp.example.
        # Look up each parent domain instead of scanning every listed one.
        rest = domain
        while "." in rest:
            rest = rest.partition(".")[2]
            if rest in self.domains:
                return True
        return False

    def matches_wildcard(self, addr: str) -> bool:
        return any(fnmatch.fnmatchcase(addr, w) for w in self.wildcards)


@dataclass(frozen=True)
class Sender:
    """``sender: ann@x.test`` | ``sender: {domain: x.test}`` | ``sender: {list: vip}``
    | ``sender: {address: "*@x.test"}`` (shell-style wildcards)."""

    addresses: AddressSet

    def test(self, f: Facts) -> tuple[bool, str]:
        hit = self.addresses.contains(f.sender) or self.addresses.matches_wildcard(f.sender)
        return hit, f"sender {f.sender or '(none)'} {'is' if hit else 'is not'} in " \
                    f"{self.addresses.name}"


@dataclass(frozen=True)
class SentTo:
    """``to: billing@example.test``: the support address the mail was sent to."""

    addresses: AddressSet

    def test(self, f: Facts) -> tuple[bool, str]:
        for r in f.recipients:
            base = r.partition("+")[0] + "@" + r.rpartition("@")[2] if "+" in r else r
            if self.addresses.contains(base):
                return True, f"sent to {r}"
        return False, f"not sent to {self.addresses.name}"


@dataclass(frozen=True)
class TextIn:
    """``subject: ...`` or ``body: ...`` (the new text, without quoted history)."""

    field: str
    matcher: TextMatcher

    def test(self, f: Facts) -> tuple[bool, str]:
        hit = self.matcher.search(f.subject_lower if self.field == "subject" else f.body_lower)
        if hit is not None:
            return True, f"{self.field} contains {hit!r}"
        return False, f"{self.field} has none of {self.matcher.shown}"


@dataclass(frozen=True)
class HeaderIs:
    """``header: {name: X-Priority, regex: "^1"}`` or ``{name: X-Foo, present: true}``."""

    name: str
    matcher: TextMatcher | None
    present: bool

    def test(self, f: Facts) -> tuple[bool, str]:
        value = f.header(self.name)
        if self.matcher is None:
            hit = (value is not None) == self.present
            return hit, f"header {self.name} is {'present' if value is not None else 'absent'}"
        if value is None:
            return False, f"header {self.name} is absent"
        found = self.matcher.search(value.lower())
        return found is not None, f"header {self.name}: {value[:60]!r}"


@dataclass(frozen=True)
class AttachmentIs:
    """``attachment: true`` | ``{type: "application/pdf"}`` | ``{name: "*.log"}``;
    type and name take shell-style wildcards (``image/*``)."""

    ctype: str | None
    name: str | None
    present: bool = True

    def test(self, f: Facts) -> tuple[bool, str]:
        matching = [
            a for a in f.attachments
            if (self.ctype is None or fnmatch.fnmatchcase(a.content_type, self.ctype.lower()))
            and (self.name is None or fnmatch.fnmatch(a.filename.lower(), self.name.lower()))
        ]
        if self.present:
            return bool(matching), (f"attachment {matching[0].filename or matching[0].content_type}"
                                    if matching else "no matching attachment")
        return not matching, "no attachment" if not matching else "has an attachment"


@dataclass(frozen=True)
class BusinessHours:
    """``business_hours: true`` (or false): inside the hours set in the rule file.

    Asks the same ``BusinessCalendar`` as the SLA clocks (one implementation of business
    time), in the zone the message time was given in (``timezone`` in mailflow.yaml).
    Overnight hours (``start: "22:00"``, ``end: "06:00"``) work; a ``calendar`` passed in
    (say, one from sla.yaml with holidays) replaces days/start/end."""

    inside: bool
    days: frozenset[int]
    start: time
    end: time
    calendar: BusinessCalendar | None = None
    # Hours from the rule file are wall-clock times in the zone the message time comes
    # in (mailflow.yaml's); a calendar passed in has its own zone.
    _message_zone: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.calendar is None and self.days:
            object.__setattr__(self, "_message_zone", True)
            object.__setattr__(self, "calendar", BusinessCalendar(
                "business_hours", weekly=weekly_hours(self.days, Window(self.start, self.end))))

    def test(self, f: Facts) -> tuple[bool, str]:
        t = f.local_time
        cal = self.calendar
        if cal is not None and self._message_zone and t.tzinfo is not None:
            cal = _in_zone(cal, t.tzinfo)
        within = cal is not None and is_open(
            cal, t if t.tzinfo is not None else t.replace(tzinfo=cal.tz))
        where = "inside" if within else "outside"
        return within == self.inside, f"received {t:%a %H:%M}, {where} business hours"


@functools.lru_cache(maxsize=16)
def _in_zone(cal: BusinessCalendar, tz: tzinfo) -> BusinessCalendar:
    """The rule file's hours are wall-clock times in mailflow.yaml's zone, which arrives
    with the message time; one calendar per zone, built once."""
    return dataclasses.replace(cal, tz=tz)


@dataclass(frozen=True)
class All:
    """``all: [cond, cond, ...]``: every one must match."""

    parts: tuple[Condition, ...]

    def test(self, f: Facts) -> tuple[bool, str]:
        whys = []
        for p in self.parts:
            ok, why = p.test(f)
            if not ok:
                return False, why
            whys.append(why)
        return True, "; ".join(whys)


@dataclass(frozen=True)
class AnyOf:
    """``any: [cond, cond, ...]``: at least one must match."""

    parts: tuple[Condition, ...]

    def test(self, f: Facts) -> tuple[bool, str]:
        whys = []
        for p in self.parts:
            ok, why = p.test(f)
            if ok:
                return True, why
            whys.append(why)
        return False, "; ".join(whys)


@dataclass(frozen=True)
class Not:
    """``not: cond``."""

    part: Condition

    def test(self, f: Facts) -> tuple[bool, str]:
        ok, why = self.part.test(f)
        return not ok, f"not ({why})"


@dataclass(frozen=True)
class Always:
    """A rule without ``when`` matches every message."""

    def test(self, f: Facts) -> tuple[bool, str]:
        return True, "no condition"
