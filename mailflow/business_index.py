"""Cumulative business time of one calendar: its questions answered by binary search.

"Which instant is N business hours after t" and "how much business time lies between a
and b" used to walk the calendar's open periods one by one, for every clock of every
ticket the scheduler looks at (a new ticket's three clocks and its escalation steps,
each walked over days of opening hours). Here the open periods are kept in order, each
with the open time before it, so each question is one or two bisections once the
periods are known: the same answers (to the microsecond; the tests of
``businesshours`` run through this), a fraction of the work.

The index grows forward as later instants are asked about and starts again, further
back, when an earlier one is; it is a cache of the calendar, so a copy (a worker
process, ``deepcopy``) starts empty.
"""

from __future__ import annotations

import contextlib
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

Period = tuple[datetime, datetime]
# periods_from(t): (valid, periods): every open period that ends after ``valid`` is in
# ``periods`` (in order, merged, endless), and ``valid`` <= t.
PeriodsFrom = Callable[[datetime], tuple[datetime, Iterator[Period]]]


def _us(d: timedelta) -> int:
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


class BusinessIndex:
    """Open periods in order with the open time (microseconds) before and after each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the scheduler and the CLI may share a calendar
        self._starts: list[datetime] = []
        self._ends: list[datetime] = []
        self._before: list[int] = []
        self._after: list[int] = []
        self._periods: Iterator[Period] | None = None
        self._valid: datetime | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, _state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]  # a copy starts empty

    def between(self, periods_from: PeriodsFrom, a: datetime, b: datetime) -> timedelta:
        """Business time from ``a`` to ``b`` (aware, ``a <= b``)."""
        with self._lock, self._forgotten_on_failure():
            self._cover(periods_from, a)
            return timedelta(microseconds=self._at(b) - self._at(a))

    def add(self, periods_from: PeriodsFrom, start: datetime, amount: timedelta) -> datetime:
        """The instant at which ``amount`` (> 0) of business time has passed since
        ``start``; an amount that runs out exactly at closing gives the closing time."""
        with self._lock, self._forgotten_on_failure():
            self._cover(periods_from, start)
            target = self._at(start) + _us(amount)
            while not self._after or self._after[-1] < target:
                self._pull()
            i = bisect_left(self._after, target)
            return self._starts[i] + timedelta(microseconds=target - self._before[i])

    # -- under the lock ----------------------------------------------------------------
    @contextlib.contextmanager
    def _forgotten_on_failure(self) -> Iterator[None]:
        """A question that fails (a calendar with no business time for years, an amount
        too large for a datetime) leaves its period walk dead or half done: start again
        on the next question, which then fails or succeeds on its own."""
        try:
            yield
        except BaseException:
            self._valid = self._periods = None
            self._starts, self._ends, self._before, self._after = [], [], [], []
            raise

    def _cover(self, periods_from: PeriodsFrom, t: datetime) -> None:
        """Start the index again before ``t`` if it begins after it."""
        if self._valid is None or t < self._valid:
            self._valid, self._periods = periods_from(t)
            self._starts, self._ends, self._before, self._after = [], [], [], []

    def _pull(self) -> None:
        assert self._periods is not None
        a, b = next(self._periods)
        total = self._after[-1] if self._after else 0
        self._starts.append(a)
        self._ends.append(b)
        self._before.append(total)
        self._after.append(total + _us(b - a))

    def _at(self, t: datetime) -> int:
        """Open time from the index's beginning to ``t`` (``t`` >= its beginning)."""
        while not self._starts or self._starts[-1] <= t:
            self._pull()  # a period that starts after t: every one before it is known
        i = bisect_right(self._starts, t) - 1
        if i < 0:
            return 0
        return self._before[i] + _us(min(t, self._ends[i]) - self._starts[i])
