"""One owner per mailbox when several ``mailflow run`` share a PostgreSQL database.

Two watchers on one folder would not lose or duplicate mail (the dedupe keys and the
processed keyword see to that) but they would fetch everything twice and race for the
marks. So each process asks for a PostgreSQL session-level advisory lock named after
the mailbox, on a connection of its own, and watches the mailbox only while it holds
it. The lock belongs to that connection: when the holder dies (SIGKILL, a lost
machine), PostgreSQL ends the session and the lock is free; a standby, asking every
few seconds, takes over. SQLite needs none of this: a second process is refused by
the run lock (:mod:`mailflow.runlock`).
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

# How often a standby asks for a mailbox it does not own (seconds).
RETRY_SECONDS = 3.0

_TRY = text("SELECT pg_try_advisory_lock(hashtextextended(:name, 0))")
_ALIVE = text("SELECT 1")


def lock_name(key: str) -> str:
    return f"mailbox:{key}"


class MailboxLock:
    """``acquire()`` -> held or not; ``alive()`` -> still held; ``release()``.

    On SQLite every call says yes: the run lock already made this process the only one.
    """

    def __init__(self, engine: Engine, key: str):
        self.engine = engine
        self.key = key
        self.shared = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if not self.shared:
            return True
        if self._conn is None:
            self._conn = self.engine.connect()
        got = bool(self._conn.execute(_TRY, {"name": lock_name(self.key)}).scalar())
        # Autocommit of the read-only statement: no transaction stays open on it.
        self._conn.commit()
        if not got:
            self._drop()
        return got

    def alive(self) -> bool:
        """The lock's connection still answers: its session, and so the lock, lives."""
        if not self.shared:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute(_ALIVE)
            self._conn.commit()
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means the lock may be gone
            log.warning("mailbox %s: the lock's database connection failed (%s); "
                        "stopping the watcher until the lock is taken again", self.key, exc)
            self._drop()
            return False

    def release(self) -> None:
        # Closing the session releases a session-level advisory lock; no unlock call
        # needed, and none that could fail half-way.
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()  # really close the session, not back to the pool
                self._conn.close()
            self._conn = None
