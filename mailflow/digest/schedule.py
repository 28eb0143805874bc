"""When the digest goes out: a configured local time, once per local day. Pure.

As arq's ``next_cron``: the schedule is a function of ``now``, so it is tested with
fixed, timezone-aware datetimes and never reads a clock. Days are local days: a DST
change makes one 23 or 25 hours long, and the digest still goes out once on each.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def parse_at(at: str) -> time:
    """``"07:00"`` -> 07:00 (the config validates the form)."""
    hh, mm = at.split(":")
    return time(int(hh), int(mm))


def send_moment(local_day: date, at: str, tz: ZoneInfo) -> datetime:
    """``at`` on ``local_day``, in UTC. A time that does not exist that day (skipped by
    the clocks going forward) falls after the gap; one that exists twice (the clocks
    going back) is its first occurrence. UTC, because an aware local time in a repeated
    hour never compares equal to any other zone's (PEP 495)."""
    return datetime.combine(local_day, parse_at(at), tz).astimezone(ZoneInfo("UTC"))


def next_digest_time(now: datetime, at: str, tz: ZoneInfo) -> datetime:
    """The next moment (UTC) strictly after ``now`` when a digest is due: what the
    daemon sleeps until."""
    today = now.astimezone(tz).date()
    for d in (today, today + timedelta(days=1), today + timedelta(days=2)):
        moment = send_moment(d, at, tz)
        if moment > now:
            return moment
    raise AssertionError("unreachable: a send time exists within two days")  # pragma: no cover


def due_digest_day(now: datetime, at: str, tz: ZoneInfo,
                   last_sent_day: date | None) -> date | None:
    """The day whose digest should be queued now, or None.

    The digest of day D goes out at ``at`` on D+1. A daemon that was down at that time
    queues it when it is back (later the same day or after); after longer downtime only
    the latest day is sent, not a pile of stale digests. ``last_sent_day`` (the store's
    newest digest, :func:`mailflow.digest.send.last_digest_day`) makes it once a day;
    the outbox's unique key makes it once even when two workers both decide to send.
    """
    today = now.astimezone(tz).date()
    passed = today if now >= send_moment(today, at, tz) else today - timedelta(days=1)
    day = passed - timedelta(days=1)
    if last_sent_day is not None and day <= last_sent_day:
        return None
    return day
