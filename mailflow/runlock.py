"""One mailflow process at a time on a SQLite database.

Two daemons on one SQLite file would both fetch the same mail and take turns at the
write lock; the second is refused at start with a clear message instead. The lock is
``flock`` on ``<database>.lock`` next to the database, held for the life of the process:
the kernel drops it when the process ends, however it ends (no stale lock to clean up
after a crash or SIGKILL), so the file itself is left in place and means nothing by its
mere existence. It holds the holder's pid, for the message.

``run --once`` takes the same lock: while a daemon runs it would write too. PostgreSQL
needs no such lock (several workers are meant to share one database there), nor does a
read-only listing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class AlreadyRunning(Exception):
    """Another process holds the database's run lock."""


def lock_path(database_url: str) -> Path | None:
    """``/var/lib/mailflow/mailflow.db.lock`` for a SQLite file, None for anything else
    (PostgreSQL, an in-memory SQLite database)."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database or ""
    if not db or db == ":memory:" or db.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(db).with_name(Path(db).name + ".lock")


@contextlib.contextmanager
def exclusive(database_url: str) -> Iterator[Path | None]:
    """Hold the run lock of ``database_url`` for the ``with`` block.

    Raises :class:`AlreadyRunning` at once (never waits) when another process has it.
    """
    path = lock_path(database_url)
    if path is None:
        yield None
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        # The database itself will fail the same way, with its own message.
        if not path.parent.is_dir():
            yield None
            return
        raise AlreadyRunning(f"cannot create the lock file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise AlreadyRunning(
                f"another mailflow{who} is already running on {path.with_suffix('')}: "
                f"stop it first, or give this one another database (lock: {path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
