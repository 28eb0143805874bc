"""The pure part of the stored day figures: which days to count again, and how."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from mailflow.digest.metrics import Counts
from mailflow.digest.stored import (
    LAG,
    DayFigures,
    basis,
    from_json,
    horizon,
    runs,
    settled,
    stale,
    to_json,
    with_cohort,
)

D = date(2026, 11, 24)
NOW = datetime(2026, 11, 25, 7, tzinfo=UTC)


def _row(day: date, upto: int, seen: int = 0, at: datetime | None = None) -> DayFigures:
    return DayFigures(day, Counts(), {}, upto, seen, at)


def test_runs_of_consecutive_days() -> None:
    days = [D, D - timedelta(days=1), D - timedelta(days=5), D - timedelta(days=3),
            D - timedelta(days=4)]
    assert runs(days) == [(D - timedelta(days=5), D - timedelta(days=3)),
                          (D - timedelta(days=1), D)]
    assert runs([]) == []


def test_a_day_is_stale_when_a_later_event_is_about_it() -> None:
    stored = {D: _row(D, 100), D - timedelta(days=1): _row(D - timedelta(days=1), 90)}
    assert stale(stored, {D: 100, D - timedelta(days=1): 95}) == {D - timedelta(days=1)}
    assert stale(stored, {}) == set()


def test_a_recounted_cohort_keeps_the_rest_of_the_day() -> None:
    old = Counts(opened=10, customer_messages=25, responses=7, first_resolved=6,
                 first_contact=5, escalations=2)
    new = Counts(opened=11, first_resolved=8, first_contact=4)
    assert with_cohort(old, new) == Counts(opened=11, customer_messages=26, responses=7,
                                           first_resolved=8, first_contact=4, escalations=2)


def test_counts_round_trip_and_missing_fields_are_zero() -> None:
    c = Counts(opened=3, rating_sum=14, clocks_breached=2)
    assert from_json(to_json(c)) == c
    assert from_json({"opened": 3}) == Counts(opened=3)


def test_basis_names_what_the_figures_depend_on() -> None:
    assert basis("Europe/Berlin", timedelta(days=7), timedelta(hours=4)) == \
        "v1 Europe/Berlin fcr=604800 early=14400"
    assert basis("UTC", timedelta(days=7), timedelta(hours=4)) != \
        basis("UTC", timedelta(days=3), timedelta(hours=4))


def test_a_day_is_stored_an_hour_after_it_ended_once_the_clocks_are_computed() -> None:
    tz = ZoneInfo("Europe/Berlin")  # the 24th ends at 23:00 UTC
    assert not settled(D, tz, datetime(2026, 11, 24, 23, 59, tzinfo=UTC))
    assert settled(D, tz, datetime(2026, 11, 25, 0, 0, tzinfo=UTC))
    # Not while the scheduler has yet to compute the clocks of a ticket due on the day.
    assert not settled(D, tz, NOW, pending=datetime(2026, 11, 24, 22, 0, tzinfo=UTC))
    assert settled(D, tz, NOW, pending=datetime(2026, 11, 24, 23, 0, tzinfo=UTC))


def test_horizon_exact_on_sqlite_lagged_on_postgresql() -> None:
    rows = [_row(D, 500, 800, NOW - timedelta(days=1)), _row(D, 700, 900, NOW - LAG / 2)]
    assert horizon(rows, 1000, NOW, exact=True) == 1000
    # 800 was seen a day ago (every writer then has finished); 900 only just now.
    assert horizon(rows, 1000, NOW, exact=False) == 800
    assert horizon([], 1000, NOW, exact=False) == 0  # the first digest vouches for none
    assert horizon(rows, 600, NOW, exact=False) == 600  # never beyond what exists
