"""Business calendars: open or not, adding business time, time between; DST both ways,
weekends, holidays (explicit and from the holidays package), overnight windows."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow.businesshours import (
    ALWAYS,
    BusinessCalendar,
    PublicHolidays,
    Window,
    add_business_time,
    business_seconds_between,
    business_time_between,
    closed_periods,
    is_open,
    open_intervals,
    parse_window,
    weekly_hours,
)
from mailflow.classify.conditions import BusinessHours, Facts

BERLIN = ZoneInfo("Europe/Berlin")
H = timedelta(hours=1)
WEEKDAYS = frozenset(range(5))


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def office(**kw: object) -> BusinessCalendar:
    return BusinessCalendar("office", BERLIN, weekly_hours(WEEKDAYS, parse_window("08:00-18:00")),
                            **kw)  # type: ignore[arg-type]


def night() -> BusinessCalendar:
    return BusinessCalendar("night", BERLIN,
                            weekly_hours(frozenset(range(7)), parse_window("22:00-06:00")))


def test_is_open_inside_outside_and_at_the_edges() -> None:
    cal = office()
    assert is_open(cal, at(2026, 3, 2, 8, 0))          # Monday opening: inclusive
    assert is_open(cal, at(2026, 3, 2, 17, 59))
    assert not is_open(cal, at(2026, 3, 2, 18, 0))     # closing: exclusive
    assert not is_open(cal, at(2026, 3, 2, 7, 59))
    assert not is_open(cal, at(2026, 3, 7, 12, 0))     # Saturday
    # The same instant given in UTC: 07:30 UTC is 08:30 in Berlin in winter.
    assert is_open(cal, datetime(2026, 3, 2, 7, 30, tzinfo=UTC))


def test_add_within_a_day_across_the_night_and_the_weekend() -> None:
    cal = office()
    assert add_business_time(cal, at(2026, 3, 2, 9), 4 * H) == at(2026, 3, 2, 13)
    assert add_business_time(cal, at(2026, 3, 2, 16), 4 * H) == at(2026, 3, 3, 10)
    assert add_business_time(cal, at(2026, 3, 6, 16), 4 * H) == at(2026, 3, 9, 10)
    # Starting outside business time counts from the next opening.
    assert add_business_time(cal, at(2026, 3, 7, 23), 1 * H) == at(2026, 3, 9, 9)
    # Running out exactly at closing gives the closing time, not Monday 08:00.
    assert add_business_time(cal, at(2026, 3, 6, 16), 2 * H) == at(2026, 3, 6, 18)
    assert add_business_time(cal, at(2026, 3, 7, 23), timedelta(0)) == at(2026, 3, 7, 23)


def test_between_is_the_inverse_of_add_and_signed() -> None:
    cal = office()
    start = at(2026, 3, 5, 15, 20)
    for hours in (0.5, 3, 10, 27, 55):
        due = add_business_time(cal, start, timedelta(hours=hours))
        assert business_time_between(cal, start, due) == timedelta(hours=hours)
    assert business_time_between(cal, at(2026, 3, 9, 10), at(2026, 3, 6, 16)) == -4 * H
    assert business_seconds_between(cal, at(2026, 3, 6, 17), at(2026, 3, 9, 9)) == 7200


def test_spring_forward_day_keeps_its_ten_business_hours() -> None:
    # 2026-03-29 (Sunday) Berlin goes from 02:00 CET to 03:00 CEST; Monday is unaffected
    # in wall-clock terms, and Friday 17:00 + 2h lands at Monday 09:00 CEST.
    cal = BusinessCalendar("all-week", BERLIN,
                           weekly_hours(frozenset(range(7)), parse_window("00:00-24:00")))
    # The whole Sunday is 23 real hours of business time.
    assert business_time_between(cal, at(2026, 3, 29, 0), at(2026, 3, 30, 0)) == 23 * H
    assert add_business_time(office(), at(2026, 3, 27, 17), 2 * H) == at(2026, 3, 30, 9)
    assert add_business_time(office(), at(2026, 3, 27, 17), 2 * H) == \
        datetime(2026, 3, 30, 7, tzinfo=UTC)


def test_fall_back_day_has_twenty_five_hours() -> None:
    cal = BusinessCalendar("all-week", BERLIN,
                           weekly_hours(frozenset(range(7)), parse_window("00:00-24:00")))
    assert business_time_between(cal, at(2026, 10, 25, 0), at(2026, 10, 26, 0)) == 25 * H
    assert add_business_time(office(), at(2026, 10, 23, 17), 2 * H) == \
        datetime(2026, 10, 26, 8, tzinfo=UTC)  # 09:00 CET


def test_overnight_window_across_midnight_and_both_dst_nights() -> None:
    cal = night()
    assert is_open(cal, at(2026, 3, 3, 23, 0))
    assert is_open(cal, at(2026, 3, 4, 5, 59))
    assert not is_open(cal, at(2026, 3, 4, 6, 0))
    assert not is_open(cal, at(2026, 3, 4, 21, 59))
    assert add_business_time(cal, at(2026, 3, 3, 21, 0), 3 * H) == at(2026, 3, 4, 1, 0)
    assert add_business_time(cal, at(2026, 3, 4, 5, 0), 2 * H) == at(2026, 3, 4, 23, 0)
    # The shift of the spring-forward night is 7 real hours, fall-back night 9.
    assert business_time_between(cal, at(2026, 3, 28, 12), at(2026, 3, 29, 12)) == 7 * H
    assert business_time_between(cal, at(2026, 10, 24, 12), at(2026, 10, 25, 12)) == 9 * H


def test_overnight_window_belongs_to_the_day_it_starts() -> None:
    # Friday night shift (22:00 Fri - 06:00 Sat) but none starting Saturday or Sunday.
    cal = BusinessCalendar("weeknights", BERLIN,
                           weekly_hours(WEEKDAYS, parse_window("22:00-06:00")))
    assert is_open(cal, at(2026, 3, 7, 3, 0))        # Saturday 03:00: Friday's shift
    assert not is_open(cal, at(2026, 3, 8, 3, 0))    # Sunday 03:00: no Saturday shift
    assert is_open(cal, at(2026, 3, 9, 3, 0)) is False  # Monday 03:00: no Sunday shift
    assert is_open(cal, at(2026, 3, 10, 3, 0))       # Tuesday 03:00: Monday's shift


def test_explicit_holidays_and_public_holidays() -> None:
    cal = office(holidays=frozenset({date(2026, 12, 24)}),
                 public=PublicHolidays("DE", "BE"))
    assert not is_open(cal, at(2026, 12, 24, 10))          # explicit
    assert not is_open(cal, at(2026, 12, 25, 10))          # Christmas Day (package)
    assert not is_open(cal, at(2026, 4, 3, 10))            # Good Friday
    assert not is_open(cal, at(2026, 5, 14, 10))           # Ascension Day
    assert cal.holiday_name(date(2026, 3, 8)) == "Women's Day"  # Berlin only
    assert BusinessCalendar("x", BERLIN, cal.weekly, public=PublicHolidays("DE", "BY")) \
        .holiday_name(date(2026, 3, 8)) is None
    assert is_open(cal, at(2026, 3, 10, 10))
    # Thursday 2026-12-24 16:00 + 4h: Christmas Eve, Christmas, Boxing Day, Sunday -> Mon.
    assert add_business_time(cal, at(2026, 12, 23, 16), 4 * H) == at(2026, 12, 28, 10)
    assert cal.holiday_name(date(2026, 12, 25)) == "Christmas Day"
    assert cal.holiday_name(date(2026, 12, 24)) == "holiday"


def test_unknown_country_or_region_is_refused() -> None:
    with pytest.raises(ValueError, match="XX"):
        PublicHolidays("XX").check()
    with pytest.raises(ValueError, match="ZZ"):
        PublicHolidays("DE", "ZZ").check()


def test_closed_periods_name_weekends_and_holidays() -> None:
    cal = office(public=PublicHolidays("DE", "BE"))
    gaps = closed_periods(cal, at(2026, 4, 2, 17), at(2026, 4, 7, 9))
    assert [(g.start, g.end) for g in gaps] == [(at(2026, 4, 2, 18), at(2026, 4, 7, 8))]
    assert "Good Friday" in gaps[0].why and "Easter Monday" in gaps[0].why
    assert "Sat closed" in gaps[0].why


def test_twenty_four_seven_ignores_hours_and_holidays() -> None:
    assert is_open(ALWAYS, at(2026, 12, 25, 3))
    # Four real hours across the spring-forward night (wall clock shows five).
    assert add_business_time(ALWAYS, at(2026, 3, 28, 23), 4 * H) == at(2026, 3, 29, 4)
    assert business_time_between(ALWAYS, at(2026, 10, 25, 0), at(2026, 10, 26, 0)) == 25 * H


def test_open_intervals_merge_touching_windows() -> None:
    day = (Window(time(8), time(12)), Window(time(12), time(18)), Window(time(13), time(14)))
    cal = BusinessCalendar("split", BERLIN, tuple(day if i < 5 else () for i in range(7)))
    got = list(open_intervals(cal, at(2026, 3, 2, 0), at(2026, 3, 3, 0)))
    assert got == [(at(2026, 3, 2, 8).astimezone(UTC), at(2026, 3, 2, 18).astimezone(UTC))]


@pytest.mark.parametrize("text", ["8-18", "08:00", "25:00-26:00", "08:61-09:00"])
def test_bad_windows_are_refused_with_a_sentence(text: str) -> None:
    with pytest.raises(ValueError, match=r"08:00-18:00|no such time"):
        parse_window(text)


def test_a_calendar_without_any_hours_is_refused() -> None:
    with pytest.raises(ValueError, match="no business hours"):
        BusinessCalendar("none", BERLIN)


def _facts(when: datetime) -> Facts:
    return Facts("a@x.test", "x.test", (), "", "", "", "", lambda _n: None, (), when)


def test_rule_condition_uses_the_calendar_overnight_too() -> None:
    day = BusinessHours(True, WEEKDAYS, time(8), time(18))
    assert day.test(_facts(at(2026, 3, 2, 10)))[0]
    assert not day.test(_facts(at(2026, 3, 1, 10)))[0]
    # The zone comes with the message time (mailflow.yaml's timezone): 09:30 Berlin.
    assert day.test(_facts(datetime(2026, 3, 2, 8, 30, tzinfo=UTC).astimezone(BERLIN)))[0]
    nights = BusinessHours(True, frozenset(range(7)), time(22), time(6))
    assert nights.test(_facts(at(2026, 3, 2, 23)))[0]
    assert nights.test(_facts(at(2026, 3, 3, 2)))[0]
    assert not nights.test(_facts(at(2026, 3, 3, 12)))[0]
    outside = BusinessHours(False, WEEKDAYS, time(8), time(18))
    ok, why = outside.test(_facts(at(2026, 3, 7, 10)))
    assert ok and "outside business hours" in why


def test_rule_condition_with_a_calendar_of_its_own_and_with_no_days() -> None:
    cal = office(public=PublicHolidays("DE", "BE"))
    cond = BusinessHours(True, frozenset(), time(0), time(0), calendar=cal)
    assert cond.test(_facts(datetime(2026, 3, 2, 8, 30, tzinfo=UTC)))[0]  # 09:30 Berlin
    assert not cond.test(_facts(at(2026, 4, 3, 10)))[0]                  # Good Friday
    never = BusinessHours(True, frozenset(), time(8), time(18))
    assert not never.test(_facts(at(2026, 3, 2, 10)))[0]


def test_describe_groups_days_with_the_same_hours() -> None:
    cal = office(public=PublicHolidays("DE", "BE"), holidays=frozenset({date(2026, 12, 24)}))
    assert cal.describe() == ("calendar office (Europe/Berlin): mon-fri 08:00-18:00; public "
                              "holidays of DE-BE; 1 listed holiday(s)")
    assert ALWAYS.describe() == "calendar 24x7: 24x7"


_windows = st.builds(
    lambda sh, sm, length: Window(time(sh, sm), (datetime.combine(date(2001, 1, 1),
                                                                  time(sh, sm))
                                                 + timedelta(minutes=length)).time()),
    st.integers(0, 23), st.sampled_from([0, 15, 30, 45]), st.integers(15, 24 * 60 - 15))
_calendars = st.builds(
    lambda days, zone: BusinessCalendar("prop", ZoneInfo(zone), tuple(
        tuple(d) for d in days)) if any(days) else ALWAYS,
    st.lists(st.lists(_windows, max_size=2), min_size=7, max_size=7),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]))
# Around both of 2026's DST changes in Europe and America.
_instants = st.sampled_from([datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 3, 27, tzinfo=UTC),
                             datetime(2026, 10, 23, tzinfo=UTC),
                             datetime(2026, 10, 30, tzinfo=UTC)]).flatmap(
    lambda base: st.integers(0, 5 * 24 * 60).map(lambda m: base + timedelta(minutes=m)))


@settings(max_examples=150, deadline=None)
@given(_calendars, _instants, st.integers(0, 60 * 60))
def test_add_and_between_agree_on_any_calendar(cal: BusinessCalendar, start: datetime,
                                               minutes: int) -> None:
    amount = timedelta(minutes=minutes)
    due = add_business_time(cal, start, amount)
    assert due >= start
    assert business_time_between(cal, start, due) == amount
    if minutes:
        assert is_open(cal, due - timedelta(seconds=1))
        intervals = list(open_intervals(cal, start, due))
        assert all(a < b for a, b in intervals)
        assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(intervals))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_business_time(office(), datetime(2026, 3, 2, 9), H)
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(office(), datetime(2026, 3, 2, 9))
