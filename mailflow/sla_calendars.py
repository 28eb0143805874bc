"""Calendars in ``sla.yaml``: YAML to ``BusinessCalendar``, every problem located.

Split from ``sla_policy.py`` (which reads the rest of the file) to keep each small::

    calendars:
      office:
        timezone: Europe/Berlin
        hours: {mon-fri: "08:00-18:00", sat: ["09:00-12:00", "13:00-15:00"]}
        holidays: {country: DE, subdiv: BE, dates: [2026-12-24]}
      nights: {hours: {mon-fri: "22:00-06:00"}}
      always: {24x7: true}
"""

from __future__ import annotations

from datetime import date, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailflow.businesshours import DAY_NAMES, BusinessCalendar, PublicHolidays, Window, parse_window
from mailflow.classify.problems import Collector
from mailflow.classify.yamlsource import LocDict, LocList

_CALENDAR_KEYS = {"timezone", "hours", "holidays", "24x7"}


def _days(spec: str) -> list[int]:
    """``mon``, ``mon-fri``, ``sat,sun``; ValueError otherwise."""
    out: list[int] = []
    for part in str(spec).lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ValueError(f"unknown day {part!r} (days are mon, tue, wed, thu, fri, sat, "
                             "sun; ranges like mon-fri)")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        out.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return out


def _hours(spec: Any, line: int, name: str, c: Collector) -> tuple[tuple[Window, ...], ...]:
    weekly: list[list[Window]] = [[] for _ in range(7)]
    if not isinstance(spec, LocDict) or not spec:
        c.add(line, f'calendar {name}: hours must map days to times, e.g. '
                    '{mon-fri: "08:00-18:00", sat: "09:00-12:00"}')
        return tuple(tuple(d) for d in weekly)
    seen: dict[int, str] = {}
    for key, value in spec.items():
        kline = spec.line_of(key)
        try:
            days = _days(key)
        except ValueError as exc:
            c.add(kline, f"calendar {name}: {exc}")
            continue
        raw = value if isinstance(value, list) else [value]
        windows: list[Window] = []
        for item in raw:
            if isinstance(item, str) and item.strip().lower() == "closed":
                continue
            try:
                windows.append(parse_window(str(item)))
            except ValueError as exc:
                c.add(kline, f"calendar {name}: {exc}")
        for d in days:
            if d in seen:
                c.add(kline, f"calendar {name}: {DAY_NAMES[d]} is given twice ({seen[d]} "
                             f"and {key})")
            seen[d] = key
            weekly[d].extend(windows)
    return tuple(tuple(d) for d in weekly)


def _holidays(spec: Any, line: int, name: str,
              c: Collector) -> tuple[frozenset[date], PublicHolidays | None]:
    if isinstance(spec, list):
        spec = LocDict({"dates": spec})
    if not isinstance(spec, dict):
        c.add(line, f"calendar {name}: holidays must be a list of dates or "
                    "{country: XX, subdiv: YY, dates: [...]}")
        return frozenset(), None
    dates: set[date] = set()
    for k in spec:
        if k not in ("country", "subdiv", "dates"):
            c.add(line, f"calendar {name}: holidays: unknown key {k!r} (expected country, "
                        "subdiv, dates)")
    raw = spec.get("dates") or []
    for i, d in enumerate(raw if isinstance(raw, list) else [raw]):
        dline = raw.line_of(i) if isinstance(raw, LocList) else line
        try:
            dates.add(d if isinstance(d, date) else date.fromisoformat(str(d)))
        except ValueError:
            c.add(dline, f"calendar {name}: holiday {d!r} is not a date like 2026-12-24")
    public = None
    if "country" in spec:
        sub = spec.get("subdiv")
        public = PublicHolidays(str(spec["country"]).upper(), str(sub) if sub else None)
        try:
            public.check()
        except ValueError as exc:
            c.add(line, f"calendar {name}: holidays: {exc}")
            public = None
    elif "subdiv" in spec:
        c.add(line, f"calendar {name}: holidays: subdiv needs a country")
    return frozenset(dates), public


def read_calendar(name: str, spec: Any, line: int, tz: tzinfo,
                  c: Collector) -> BusinessCalendar | None:
    """One named calendar; None (with its problems in ``c``) when it is wrong."""
    if not isinstance(spec, LocDict):
        c.add(line, f"calendar {name}: must be a mapping (timezone, hours, holidays, 24x7)")
        return None
    before = len(c.problems)
    for k in spec:
        if k not in _CALENDAR_KEYS:
            c.add(spec.line_of(k), f"calendar {name}: unknown key {k!r} (expected "
                                   f"{', '.join(sorted(_CALENDAR_KEYS))})")
    if "timezone" in spec:
        try:
            tz = ZoneInfo(str(spec["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            c.add(spec.line_of("timezone"), f"calendar {name}: unknown time zone "
                                            f"{spec['timezone']!r} (e.g. Europe/Berlin)")
    if spec.get("24x7") is True:
        if "hours" in spec:
            c.add(spec.line_of("hours"), f"calendar {name}: a 24x7 calendar has no hours")
        return BusinessCalendar(name, tz, always_open=True)
    if "24x7" in spec and spec["24x7"] is not False:
        c.add(spec.line_of("24x7"), f"calendar {name}: 24x7 must be true or false")
    weekly = _hours(spec.get("hours"), spec.line_of("hours"), name, c)
    days, public = _holidays(spec.get("holidays", []), spec.line_of("holidays"), name, c)
    if len(c.problems) != before:
        return None
    return BusinessCalendar(name, tz, weekly, days, public)
