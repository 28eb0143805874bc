"""The calendar index gives the very answers of walking the open periods one by one
(``open_intervals``, the definition), for calendars with DST, overnight shifts,
holidays and gaps, whatever order the questions come in."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow.businesshours import (
    BusinessCalendar,
    add_business_time,
    business_time_between,
    open_intervals,
    parse_window,
    weekly_hours,
)

TZ = ZoneInfo("Europe/Berlin")
EPOCH = datetime(2026, 3, 20, tzinfo=UTC)  # spring forward and fall back within reach


def walk_add(cal: BusinessCalendar, start: datetime, amount: timedelta) -> datetime:
    left = amount
    for a, b in open_intervals(cal, start):
        if b - a >= left:
            return a + left
        left -= b - a
    raise AssertionError("unreachable")


def walk_between(cal: BusinessCalendar, a: datetime, b: datetime) -> timedelta:
    return sum((y - x for x, y in open_intervals(cal, a, b)), timedelta(0))


def calendar() -> BusinessCalendar:
    weekly = (
        (parse_window("08:00-12:00"), parse_window("13:00-17:30")),
        (parse_window("22:00-06:00"),),  # overnight, runs into Wednesday
        (parse_window("05:00-09:00"), parse_window("08:30-18:00")),  # overlapping
        (parse_window("00:00-24:00"),),
        (parse_window("09:00-17:00"),),
        (),
        (parse_window("10:00-10:01"),),
    )
    return BusinessCalendar("mixed", TZ, weekly,
                            holidays=frozenset({date(2026, 3, 30), date(2026, 10, 26)}))


instants = st.integers(0, 300 * 86_400 * 1000).map(
    lambda ms: EPOCH + timedelta(milliseconds=ms))
amounts = st.integers(1, 40 * 3600 * 1000).map(lambda ms: timedelta(milliseconds=ms))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(instants, instants, amounts), min_size=1, max_size=12))
def test_same_answers_as_walking(questions: list[tuple[datetime, datetime, timedelta]]) -> None:
    cal = calendar()  # a fresh index per example: the questions' order matters
    for a, b, amount in questions:
        assert add_business_time(cal, a, amount) == walk_add(cal, a, amount)
        assert business_time_between(cal, a, b) == (
            walk_between(cal, a, b) if a <= b else -walk_between(cal, b, a))


def test_closing_time_and_exact_fit() -> None:
    cal = calendar()
    monday = datetime(2026, 4, 6, 8, tzinfo=TZ)
    # 4 hours from Monday 08:00 end at 12:00 (closing), not at 13:00 (next opening).
    assert add_business_time(cal, monday, timedelta(hours=4)) == monday + timedelta(hours=4)
    assert add_business_time(cal, monday - timedelta(hours=3), timedelta(minutes=1)) == \
        monday + timedelta(minutes=1)


def test_a_copy_starts_empty_and_answers_the_same() -> None:
    """Calendars travel to worker processes (pickle) and are deep-copied with settings:
    the index, a cache with a lock inside, must not break either."""
    cal = calendar()
    at = datetime(2026, 5, 4, 9, tzinfo=TZ)
    want = add_business_time(cal, at, timedelta(hours=30))
    for other in (pickle.loads(pickle.dumps(cal)), copy.deepcopy(cal)):
        assert other._index._starts == []
        assert add_business_time(other, at, timedelta(hours=30)) == want


def test_a_failed_question_leaves_the_next_one_to_fail_or_succeed_on_its_own() -> None:
    """A calendar closed for four years: 100 business hours cannot be found. Asking
    again must give the same clear error, not a dead walk's StopIteration, and a
    question the calendar can answer must still be answered."""
    closed = frozenset(date(2026, 6, 1) + timedelta(days=i) for i in range(4 * 366))
    cal = BusinessCalendar("closed", UTC, weekly_hours(frozenset(range(5)),
                                                       parse_window("08:00-18:00")), closed)
    start = datetime(2026, 5, 20, tzinfo=UTC)
    for _ in range(2):
        with pytest.raises(ValueError, match="no business time"):
            add_business_time(cal, start, timedelta(hours=100))
    assert business_time_between(cal, start, datetime(2026, 5, 21, tzinfo=UTC)) == \
        timedelta(hours=10)
    assert add_business_time(cal, start, timedelta(hours=3)) == start + timedelta(hours=11)
