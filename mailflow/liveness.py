"""How each part of a running daemon is doing, shared by its threads without globals.

A mailbox watcher (its own thread) and the outbox sender write here what they just
lived through: connected or not, the last cycle that worked, the last error and since
when they fail. Health (``/healthz``), alerts and ``mailflow status`` read a snapshot.
One :class:`Liveness` is built by the daemon and handed to whoever needs it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime


@dataclass(frozen=True)
class PartView:
    """A snapshot of one part: a mailbox (``name`` is its key) or ``sender``."""

    name: str
    owned: bool = True  # False: another mailflow process holds this mailbox
    connected: bool = False
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failing_since: datetime | None = None  # first failure after the last success
    restarts: int = 0


@dataclass
class PartState:
    """The mutable side of :class:`PartView`; every change under one lock."""

    name: str
    _view: PartView = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._view = PartView(self.name)

    def view(self) -> PartView:
        with self._lock:
            return self._view

    def _set(self, **changes: object) -> None:
        with self._lock:
            self._view = replace(self._view, **changes)  # type: ignore[arg-type]

    def connected(self, yes: bool) -> None:
        self._set(connected=yes)

    def owned(self, yes: bool) -> None:
        self._set(owned=yes)

    def succeeded(self, now: datetime) -> None:
        self._set(last_success=now, failing_since=None)

    def failed(self, why: str, now: datetime) -> None:
        with self._lock:
            v = self._view
            self._view = replace(v, last_error=why[:500], last_error_at=now,
                                 failing_since=v.failing_since or now)

    def restarted(self) -> None:
        with self._lock:
            self._view = replace(self._view, restarts=self._view.restarts + 1)


@dataclass
class Liveness:
    """Every part of one daemon: its mailboxes by key, and the sender."""

    started: datetime
    mailboxes: dict[str, PartState] = field(default_factory=dict)
    sender: PartState = field(default_factory=lambda: PartState("sender"))

    def mailbox(self, key: str) -> PartState:
        return self.mailboxes.setdefault(key, PartState(key))

    def views(self) -> list[PartView]:
        return [*(m.view() for m in self.mailboxes.values()), self.sender.view()]
