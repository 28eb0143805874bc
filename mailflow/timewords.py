"""Times as people write them in mail commands: ``4h``, ``1d 4h``, ``tomorrow 10:00``,
``friday 15:00``, ``2026-12-01 15:00``; pure (``now`` and the time zone are given).

Kept apart from config durations (``mailflow.config.parse_duration``): people replying
from a phone write ``2 hours`` and ``1h30m``, and a wrong time must say what is wrong
("in the past") rather than only that it does not parse.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Further ahead than this is a typo (2062 for 2026), not a plan.
LIMIT = timedelta(days=366)
_UNITS = {
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "week": 604800, "weeks": 604800,
}
_PART = re.compile(r"(\d{1,6})\s*([a-z]+)")
_DURATION = re.compile(r"^(?:\d{1,6}\s*[a-z]+\s*)+$")
_DAY_WORDS = {"yesterday": -1, "today": 0, "tomorrow": 1}
_WEEKDAYS = {d: i for i, names in enumerate((
    ("mon", "monday"), ("tue", "tuesday"), ("wed", "wednesday"), ("thu", "thursday"),
    ("fri", "friday"), ("sat", "saturday"), ("sun", "sunday"))) for d in names}
_CLOCK = re.compile(r"^([01]?\d|2[0-3])[:.h]([0-5]\d)$")
_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_DATETIME = re.compile(r"^(\d{4}-\d{1,2}-\d{1,2})[ t]+(\S+)$")
_FORMS = "4h, 2d, 1h30m, tomorrow 10:00, friday 15:00 or 2026-12-01 15:00"


class TimeProblem(ValueError):
    """``definite``: the text is a time, but a wrong one (past, too far, zero)."""

    def __init__(self, what: str, definite: bool = False):
        super().__init__(what)
        self.definite = definite


def parse_duration_words(text: str) -> timedelta:
    """``4h``, ``90m``, ``2 days``, ``1h30m``, ``1d 4h``; raise TimeProblem."""
    t = text.strip().lower()
    if not _DURATION.match(t):
        raise TimeProblem(f"{text!r} is not a duration such as 4h, 30m, 2d or 1h30m")
    seconds = 0
    for n, unit in _PART.findall(t):
        if unit not in _UNITS:
            raise TimeProblem(f"{text!r}: unknown unit {unit!r} (use m, h, d or w)")
        seconds += int(n) * _UNITS[unit]
    if seconds <= 0:
        raise TimeProblem(f"{text!r} must be longer than zero", definite=True)
    if seconds > LIMIT.total_seconds():
        raise TimeProblem(f"{text!r} is more than a year ahead", definite=True)
    return timedelta(seconds=seconds)


def parse_when(text: str, now: datetime, tz: tzinfo) -> datetime:
    """A future moment, aware, in ``tz``: a duration from ``now`` (``in 4h``), a day word
    with an optional clock time, a weekday with a clock time (the next one), a clock
    time today, or a date with a clock time."""
    t = " ".join(text.strip().lower().split())
    t = t[3:] if t.startswith("in ") else t  # "in 4h"
    local_now = now.astimezone(tz)
    due = _absolute(t, local_now, tz)
    if due is None:
        try:
            due = local_now + parse_duration_words(t)
        except TimeProblem as exc:
            if exc.definite:
                raise
            raise TimeProblem(f"{text!r} is not a time: write {_FORMS}") from None
    if due <= now:
        raise TimeProblem(f"{text!r} is in the past (it is now "
                          f"{format_when(local_now, _tz_name(tz))})", definite=True)
    if due - now > LIMIT:
        raise TimeProblem(f"{text!r} is more than a year ahead", definite=True)
    return due


def _absolute(t: str, local_now: datetime, tz: tzinfo) -> datetime | None:
    words = t.split(" ")
    if words[0] in _DAY_WORDS and len(words) == 2 and not any(ch.isdigit() for ch in words[1]):
        return None  # "tomorrow waiting ...": the day word alone is the time
    if words[0] in _DAY_WORDS and len(words) <= 2:
        day = local_now.date() + timedelta(days=_DAY_WORDS[words[0]])
        if len(words) == 1:
            if words[0] == "today":
                raise TimeProblem("'today' needs a time: today 15:00", definite=True)
            return _at(day, local_now.time().replace(second=0, microsecond=0), tz)
        return _at(day, _clock(words[1]), tz)
    if words[0] in _WEEKDAYS and len(words) <= 2:
        if len(words) == 1 or not any(ch.isdigit() for ch in words[1]):
            raise TimeProblem(f"{words[0]!r} needs a time: {words[0]} 15:00", definite=True)
        clock = _clock(words[1])
        ahead = (_WEEKDAYS[words[0]] - local_now.weekday()) % 7
        if ahead == 0 and clock <= local_now.time():
            ahead = 7  # "friday 10:00" said on a Friday afternoon: next week's
        return _at(local_now.date() + timedelta(days=ahead), clock, tz)
    if len(words) == 1 and _CLOCK.match(t):
        return _at(local_now.date(), _clock(t), tz)
    if len(words) == 1 and _DATE.match(t):
        _date(t)  # a malformed date says so first
        raise TimeProblem(f"{t!r} needs a time too: {t} 15:00", definite=True)
    m = _DATETIME.match(t)
    if m:
        return _at(_date(m.group(1)), _clock(m.group(2)), tz)
    return None


def _date(text: str) -> date:
    m = _DATE.match(text)
    try:
        assert m is not None
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except (AssertionError, ValueError):
        raise TimeProblem(f"{text!r} is not a date (write YYYY-MM-DD)", definite=True) from None


def _clock(text: str) -> time:
    m = _CLOCK.match(text)
    if not m:
        raise TimeProblem(f"{text!r} is not a time of day (write HH:MM)", definite=True)
    return time(int(m.group(1)), int(m.group(2)))


def _at(day: date, clock: time, tz: tzinfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz)


def _tz_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def format_when(when: datetime, tz_name: str = "UTC") -> str:
    """``Wed 2026-11-25 14:00 (Europe/Berlin)``: unambiguous for readers anywhere."""
    try:
        zone: tzinfo = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = when.tzinfo or ZoneInfo("UTC")
    local = when.astimezone(zone)
    return f"{local:%a %Y-%m-%d %H:%M} ({tz_name})"
