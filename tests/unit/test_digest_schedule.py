"""The digest's schedule: a local time, once per local day, after downtime, across DST."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from mailflow.digest.schedule import due_digest_day, next_digest_time

BERLIN = ZoneInfo("Europe/Berlin")


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def test_next_time_is_the_local_time_today_or_tomorrow() -> None:
    # 05:30 UTC is 06:30 in Berlin in winter: 07:00 local today, 06:00 UTC.
    assert next_digest_time(utc(2026, 11, 25, 5, 30), "07:00", BERLIN) == utc(2026, 11, 25, 6)
    # Exactly at the moment: the next one is tomorrow.
    assert next_digest_time(utc(2026, 11, 25, 6), "07:00", BERLIN) == utc(2026, 11, 26, 6)


def test_next_time_across_dst() -> None:
    # The clocks go forward on 2026-03-29 (02:00 -> 03:00): 07:00 is then 05:00 UTC.
    assert next_digest_time(utc(2026, 3, 28, 7), "07:00", BERLIN) == utc(2026, 3, 29, 5)
    # And back on 2026-10-25: 07:00 is 06:00 UTC again.
    assert next_digest_time(utc(2026, 10, 24, 6), "07:00", BERLIN) == utc(2026, 10, 25, 6)
    # 02:30 does not exist on 2026-03-29: after the gap, 03:30 local (01:30 UTC).
    got = next_digest_time(utc(2026, 3, 28, 23), "02:30", BERLIN)
    assert got == utc(2026, 3, 29, 1, 30)
    # 02:30 exists twice on 2026-10-25: the first one (00:30 UTC), once.
    assert next_digest_time(utc(2026, 10, 24, 23), "02:30", BERLIN) == utc(2026, 10, 25, 0, 30)
    assert next_digest_time(utc(2026, 10, 25, 0, 30), "02:30", BERLIN) == utc(2026, 10, 26, 1,
                                                                              30)


def test_due_day_once_per_day() -> None:
    before = utc(2026, 11, 25, 5, 59)  # 06:59 in Berlin
    after = utc(2026, 11, 25, 6)  # 07:00 in Berlin
    assert due_digest_day(before, "07:00", BERLIN, date(2026, 11, 23)) is None
    assert due_digest_day(after, "07:00", BERLIN, date(2026, 11, 23)) == date(2026, 11, 24)
    # Once sent, not again that day (a restart reads the last day from the store).
    assert due_digest_day(utc(2026, 11, 25, 15), "07:00", BERLIN, date(2026, 11, 24)) is None


def test_due_day_after_downtime() -> None:
    # Down from 06:00 to 11:00 local: sent when back.
    assert due_digest_day(utc(2026, 11, 25, 10), "07:00", BERLIN,
                          date(2026, 11, 23)) == date(2026, 11, 24)
    # Down for three days: only the latest day, once.
    assert due_digest_day(utc(2026, 11, 28, 9), "07:00", BERLIN,
                          date(2026, 11, 23)) == date(2026, 11, 27)
    # Back before today's time: yesterday's send time has passed, its day is due.
    assert due_digest_day(utc(2026, 11, 25, 3), "07:00", BERLIN,
                          date(2026, 11, 22)) == date(2026, 11, 23)
    # Never sent at all.
    assert due_digest_day(utc(2026, 11, 25, 6), "07:00", BERLIN, None) == date(2026, 11, 24)


def test_due_day_on_dst_days() -> None:
    # The 25-hour day 2026-10-25 gets one digest, at 07:00 on the 26th (06:00 UTC).
    assert due_digest_day(utc(2026, 10, 26, 5, 59), "07:00", BERLIN,
                          date(2026, 10, 24)) is None
    assert due_digest_day(utc(2026, 10, 26, 6), "07:00", BERLIN,
                          date(2026, 10, 24)) == date(2026, 10, 25)
    # The 23-hour day 2026-03-29: at 07:00 on the 30th (05:00 UTC).
    assert due_digest_day(utc(2026, 3, 30, 5), "07:00", BERLIN,
                          date(2026, 3, 28)) == date(2026, 3, 29)
