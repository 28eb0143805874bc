"""Business calendars: the one implementation of "when is the help desk working".

SLA clocks (``slaclock.py``), escalation offsets and the ``business_hours`` rule
condition all ask the same questions of a ``BusinessCalendar``: is this instant inside
business time, which instant is N business hours after that one, how much business
time lies between two instants. Pure: no clock is read, ``now`` is always passed in.

Windows are wall-clock times in the calendar's zone, so DST changes are handled by
converting each day's window to UTC through zoneinfo: a 08:00-18:00 day stays 10 hours
on both change days, an overnight 22:00-06:00 shift is 7 hours on the spring-forward
night and 9 hours on the fall-back night, as it is for the people working it.

- A window whose end is not after its start runs past midnight (``22:00-06:00``) and
  belongs to the day it starts on: it is closed when that day is a holiday.
- ``00:00-24:00`` (or ``00:00-00:00``) is the whole day.
- A wall time that does not exist (02:30 on a spring-forward day) is read the way
  Python reads it (fold=0): as the same time on the old offset, 03:30 local.
- A 24x7 calendar is always open and ignores holidays.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from mailflow.business_index import BusinessIndex, Period

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Searching further than this for open time means the calendar has (practically) none.
_MAX_SEARCH_DAYS = 3 * 366
_MAX_PIECE = timedelta(days=7)
_MEMO_DAYS = 4096
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class Window:
    """Open from ``start`` to ``end`` wall-clock time; ``end <= start`` ends the next day."""

    start: time
    end: time

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        end = "24:00" if self.end == time(0) and self.start == time(0) else f"{self.end:%H:%M}"
        return f"{self.start:%H:%M}-{end}"


def parse_window(text: str) -> Window:
    """``"08:00-18:00"``, ``"22:00-06:00"`` (overnight), ``"00:00-24:00"``; ValueError
    with a sentence an administrator understands otherwise."""
    m = _WINDOW.match(text)
    if not m:
        raise ValueError(f"business hours must look like 08:00-18:00 (got {text!r})")
    sh, sm, eh, em = (int(g) for g in m.groups())
    if eh == 24 and em == 0:
        eh = 0
    if sh > 23 or eh > 23 or sm > 59 or em > 59:
        raise ValueError(f"no such time of day in {text!r} (hours 00-23, or 24:00 as an end)")
    return Window(time(sh, sm), time(eh, em))


@dataclass(frozen=True)
class PublicHolidays:
    """A country's (and optionally a region's) public holidays from the ``holidays``
    package, so nobody has to type every year's Easter Monday."""

    country: str
    subdiv: str | None = None

    def check(self) -> None:
        """Raise ValueError when the package knows no such country or region."""
        _public_holidays(self.country, self.subdiv, 2026)

    def name_of(self, day: date) -> str | None:
        return _public_holidays(self.country, self.subdiv, day.year).get(day)


@functools.lru_cache(maxsize=256)
def _public_holidays(country: str, subdiv: str | None, year: int) -> dict[date, str]:
    # Imported here: only calendars that name a country need the package loaded.
    import holidays

    try:
        found = holidays.country_holidays(country, subdiv=subdiv, years=year)
    except NotImplementedError as exc:  # how the package says "unknown country/region"
        raise ValueError(str(exc)) from None
    return dict(found.items())


@dataclass(frozen=True)
class BusinessCalendar:
    """Weekly hours in a time zone, minus holidays; or 24x7.

    ``weekly[i]`` holds the windows that start on weekday ``i`` (0 = Monday)."""

    name: str
    tz: tzinfo = UTC
    weekly: tuple[tuple[Window, ...], ...] = ((),) * 7
    holidays: frozenset[date] = frozenset()
    public: PublicHolidays | None = None
    always_open: bool = False
    # Length of one "d" in durations for this calendar: the longest open day.
    business_day: timedelta = field(default=timedelta(0))
    # Memo of each day's open periods in UTC: the same few days are converted again and
    # again (every clock of every due ticket), and zoneinfo conversions dominate.
    _days: dict[date, tuple[tuple[datetime, datetime], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)
    # Open periods with the open time before each: "N hours after t" by bisection.
    _index: BusinessIndex = field(default_factory=BusinessIndex, init=False, repr=False,
                                  compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError("weekly hours need an entry for each of the 7 weekdays")
        if not self.always_open and not any(self.weekly):
            raise ValueError(f"calendar {self.name}: no business hours on any day")
        if not self.business_day:
            longest = timedelta(hours=24) if self.always_open else max(
                sum((window_length(w) for w in day), timedelta(0)) for day in self.weekly)
            object.__setattr__(self, "business_day", longest)

    def holiday_name(self, day: date) -> str | None:
        """Why ``day`` is a holiday (``"holiday"`` for an explicit date), or None."""
        if self.always_open:
            return None
        if day in self.holidays:
            return "holiday"
        return self.public.name_of(day) if self.public else None

    def describe(self) -> str:
        """One line for explanations: zone, hours, holidays."""
        if self.always_open:
            return f"calendar {self.name}: 24x7"
        runs: list[tuple[int, int]] = []  # consecutive days with the same windows
        for i in range(7):
            if runs and self.weekly[runs[-1][1]] == self.weekly[i] and runs[-1][1] == i - 1:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))
        days = ", ".join(
            f"{DAY_NAMES[a]}{'-' + DAY_NAMES[b] if b > a else ''} "
            f"{' '.join(map(str, self.weekly[a]))}" for a, b in runs if self.weekly[a])
        extra = ""
        if self.public:
            extra += f"; public holidays of {self.public.country}" + (
                f"-{self.public.subdiv}" if self.public.subdiv else "")
        if self.holidays:
            extra += f"; {len(self.holidays)} listed holiday(s)"
        return f"calendar {self.name} ({getattr(self.tz, 'key', self.tz)}): {days}{extra}"


def weekly_hours(days: frozenset[int] | set[int], window: Window) -> tuple[tuple[Window, ...], ...]:
    """The same window on each of ``days`` (0 = Monday): the common case, in one call."""
    return tuple((window,) if i in days else () for i in range(7))


ALWAYS = BusinessCalendar("24x7", always_open=True)


def window_length(w: Window) -> timedelta:
    """Nominal length (wall clock; a DST night makes the real one differ)."""
    a = datetime.combine(date(2001, 1, 1), w.start)
    b = datetime.combine(date(2001, 1, 2) if w.overnight else date(2001, 1, 1), w.end)
    return b - a


def _utc(day: date, t: time, tz: tzinfo) -> datetime:
    return datetime.combine(day, t, tzinfo=tz).astimezone(UTC)


def _day_intervals(cal: BusinessCalendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    found = cal._days.get(day)
    if found is not None:
        return found
    out = []
    if not cal.holiday_name(day):
        for w in cal.weekly[day.weekday()]:
            a = _utc(day, w.start, cal.tz)
            b = _utc(day + timedelta(days=1) if w.overnight else day, w.end, cal.tz)
            if b > a:
                out.append((a, b))
    if len(cal._days) >= _MEMO_DAYS:
        cal._days.clear()
    cal._days[day] = result = tuple(sorted(out))
    return result


def _merged(cal: BusinessCalendar, day: date) -> Iterator[tuple[datetime, datetime]]:
    """Every open period from ``day`` on, overlapping windows merged, endlessly."""
    cur: tuple[datetime, datetime] | None = None
    empty_days = 0
    while True:
        ivs = _day_intervals(cal, day)
        empty_days = 0 if ivs else empty_days + 1
        if empty_days > _MAX_SEARCH_DAYS:
            raise ValueError(f"calendar {cal.name}: no business time within "
                             f"{_MAX_SEARCH_DAYS} days after {day:%Y-%m-%d}")
        for a, b in ivs:
            # Touching windows merge, but a calendar open round the clock would merge
            # forever: hand out such a stretch in pieces (adjacent pieces mean the same).
            if cur is not None and a <= cur[1] and cur[1] - cur[0] < _MAX_PIECE:
                cur = (cur[0], max(cur[1], b))
                continue
            if cur is not None:
                if cur[1] > cur[0]:
                    yield cur
                a = max(a, cur[1])
                if b <= a:
                    cur = (a, a)
                    continue
            cur = (a, b)
        day += timedelta(days=1)


def open_intervals(cal: BusinessCalendar, since: datetime,
                   until: datetime | None = None) -> Iterator[tuple[datetime, datetime]]:
    """Open periods (UTC, merged, in order) that end after ``since``, clipped to
    [since, until). Without ``until`` it goes on as far as the calendar has open time."""
    since = _aware(since)
    until = _aware(until) if until is not None else None
    if until is not None and until <= since:
        return
    if cal.always_open:
        yield since, until if until is not None else datetime.max.replace(tzinfo=UTC)
        return
    # From yesterday: a night shift that started then may still be open.
    for a, b in _merged(cal, since.astimezone(cal.tz).date() - timedelta(days=1)):
        if until is not None and a >= until:
            return
        if b <= since:
            continue
        yield max(a, since), b if until is None else min(b, until)


def _periods_from(cal: BusinessCalendar, t: datetime) -> tuple[datetime, Iterator[Period]]:
    """For the index: every open period ending after the returned instant (a month
    before ``t``, so nearby earlier questions need no new start), in order."""
    day = t.astimezone(cal.tz).date() - timedelta(days=31)
    # From the day before: a night shift that started then runs into ``day``.
    return _utc(day, time(0), cal.tz), _merged(cal, day - timedelta(days=1))


def _aware(instant: datetime) -> datetime:
    """UTC; a naive datetime would silently mean the machine's zone, so it is refused."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"business time needs timezone-aware datetimes (got {instant})")
    return instant.astimezone(UTC)


def is_open(cal: BusinessCalendar, instant: datetime) -> bool:
    """Is ``instant`` (aware) inside business time? Windows are half-open [start, end)."""
    for a, _b in open_intervals(cal, instant, instant + timedelta(microseconds=1)):
        return a <= instant.astimezone(UTC)
    return False


def add_business_time(cal: BusinessCalendar, start: datetime, amount: timedelta) -> datetime:
    """The instant at which ``amount`` of business time has passed since ``start``.

    Counting starts at the next opening when ``start`` is outside business time; an
    amount that runs out exactly at closing gives the closing time, not the next
    opening. A zero amount gives ``start``. Result in UTC."""
    start = _aware(start)
    if amount <= timedelta(0):
        return start
    if cal.always_open:
        return start + amount
    return cal._index.add(functools.partial(_periods_from, cal), start, amount)


def business_time_between(cal: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
    """Business time from ``start`` to ``end``; negative when ``end`` is earlier."""
    start, end = _aware(start), _aware(end)
    if end < start:
        return -business_time_between(cal, end, start)
    if cal.always_open:
        return end - start
    return cal._index.between(functools.partial(_periods_from, cal), start, end)


def add_business_seconds(cal: BusinessCalendar, start: datetime, seconds: float) -> datetime:
    return add_business_time(cal, start, timedelta(seconds=seconds))


def business_seconds_between(cal: BusinessCalendar, start: datetime, end: datetime) -> float:
    return business_time_between(cal, start, end).total_seconds()


@dataclass(frozen=True)
class Gap:
    """A closed period inside a span, with why it is closed (for ``sla explain``)."""

    start: datetime
    end: datetime
    why: str


def closed_periods(cal: BusinessCalendar, start: datetime, end: datetime) -> list[Gap]:
    """The periods between ``start`` and ``end`` that are not business time, each with
    the closed days and holidays it spans."""
    gaps: list[Gap] = []
    cursor = start.astimezone(UTC)
    end = end.astimezone(UTC)
    for a, b in [*open_intervals(cal, start, end), (end, end)]:
        if a > cursor:
            gaps.append(Gap(cursor, a, _why_closed(cal, cursor, a)))
        cursor = max(cursor, b)
    return gaps


def _why_closed(cal: BusinessCalendar, a: datetime, b: datetime) -> str:
    reasons = []
    day = a.astimezone(cal.tz).date()
    last = b.astimezone(cal.tz).date()
    while day <= last:
        name = cal.holiday_name(day)
        if name:
            reasons.append(f"{day:%a %Y-%m-%d} {name}")
        elif not cal.weekly[day.weekday()] and day != last:
            reasons.append(f"{day:%a} closed")
        day += timedelta(days=1)
    return "outside business hours" + (f" ({', '.join(reasons)})" if reasons else "")
