"""Group commit for the outbox's "sent" marks.

Every SMTP connection waits until the mark of its last mail is committed before it
hands over the next one (so a crash leaves at most one delivered-but-unmarked mail per
connection). With a transaction per mail that wait would be a commit per mail; here
the marks that arrive while one commit runs all go into the next, so N busy
connections share one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import URL, Engine, event

from mailflow.store.db import make_engine

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """``await gc.add(item)`` returns once ``record`` (run off the event loop by
    ``run_in``, with every item waiting at that moment) has committed it; raises what
    ``record`` raised."""

    def __init__(self, record: Callable[[list[T]], None],
                 run_in: Callable[..., Awaitable[None]]):
        self.record = record
        self.run_in = run_in
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, fut))
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        await fut

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self.run_in(self.record, [item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every waiter gets the error
                    for _, fut in batch:
                        fut.set_exception(exc)
                    continue
                for _, fut in batch:
                    fut.set_result(None)
        finally:
            self._task = None


def relaxed_engine(main: Engine) -> Engine:
    """A second engine on the same database whose commits do not wait for the disk.

    For the "sent" marks only: they are on the sending critical path, and an fsync
    costs 0.4-2.5 ms per mail on the benchmark machine. Such a commit still survives a
    crash of mailflow (SQLite has written it to the WAL, PostgreSQL has it); a power cut
    may lose the last few marks, and those mails are then sent again with the same
    Message-ID: the window every SMTP client has after a 250, never a lost mail. All
    other writes keep the main engine's full syncs.
    """
    url: URL = main.url
    engine = make_engine(url)  # type: ignore[arg-type]  # create_engine takes a URL too

    def relax(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("PRAGMA synchronous=NORMAL")
        elif engine.dialect.name == "postgresql":
            cur.execute("SET synchronous_commit TO off")
            dbapi_conn.commit()
        cur.close()

    event.listen(engine, "connect", relax)
    return engine
