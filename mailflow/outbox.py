"""Deliver queued mail: claim due rows, render once, send, record the server's answer.

Rows are claimed with a lease in a committed transaction (one statement: on PostgreSQL
with ``FOR UPDATE SKIP LOCKED``) before any SMTP traffic, so two senders, or two
connections of one sender, never take the same row. A claimed batch is rendered (in a
worker process, :mod:`mailflow.renderpool`) and its bytes are stored before the first
of them is sent; a retry sends the very same bytes and Message-ID.

``smtp.connections`` connections send at once, each the rows it claimed. A row is
marked sent only after the server's 250, and a connection hands over its next mail
only once the mark of its previous one is committed: a sender that dies leaves at most
one delivered-but-unmarked mail per connection. The marks of all connections are
committed together (group commit), so there is no transaction per mail. Rows a dead
sender held stay ``sending`` until their lease runs out and are then sent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session, sessionmaker, undefer

from mailflow.accounts import apply_context
from mailflow.clock import Clock
from mailflow.compose import Composer
from mailflow.config import Settings
from mailflow.groupcommit import GroupCommit, relaxed_engine
from mailflow.renderpool import RenderPool, render  # noqa: F401 - mailflow outbox show renders
from mailflow.smtp import DeliveryError, SmtpTransport
from mailflow.store.db import transaction
from mailflow.store.models import OutboxRow, Suppression
from mailflow.tickets import CUSTOMER_KINDS, OutboxStatus
from mailflow.tickets.apply import ApplyContext, apply
from mailflow.tickets.effects import (
    Effect,
    MailFailed,
    MailRetry,
    MailSent,
)
from mailflow.tickets.marks import apply_marks

log = logging.getLogger(__name__)

T = TypeVar("T")
PENDING, SENDING, SENT, FAILED, DROPPED = (str(s) for s in (
    OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.SENT, OutboxStatus.FAILED,
    OutboxStatus.DROPPED))
# A connection that meets this many temporary failures in a row (4xx, a dropped
# connection) stops for the pass; its rows go back to the queue for the others.
_CONNECTION_TRIES = 3
_CONNECTION_PAUSE = 0.5  # seconds, doubled per failure in a row: per-connection back-off


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def add(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.retrying += other.retrying
        self.failed += other.failed


def backoff(attempts: int, initial: timedelta, cap: timedelta) -> timedelta:
    """Capped exponential back-off: initial, 2x, 4x, ... up to cap."""
    return min(cap, initial * (2 ** max(0, attempts - 1)))


def claim(sessions: sessionmaker[Session], now: datetime, lease: timedelta,
          limit: int = 100) -> list[int]:
    """Lease up to ``limit`` due rows, those due longest first; an UPDATE ... RETURNING
    per kind of due row, so a row is never handed to two claimers (SQLite: under its
    write lock; PostgreSQL: SKIP LOCKED).

    Two statements, not one with OR: with OR, SQLite collected every due row and sorted
    them for each claim of 20 (a backlog of 50,000 mails sorted 2,500 times); each
    half alone reads ``ix_outbox_status_next_attempt_at`` in order and stops at the
    limit."""
    table = OutboxRow.__table__
    kinds = (
        # A sender died holding these: its lease ran out. Rare, so first.
        (and_(OutboxRow.status == SENDING, OutboxRow.lease_until < now), (OutboxRow.id,)),
        (and_(OutboxRow.status == PENDING, OutboxRow.next_attempt_at <= now),
         (OutboxRow.next_attempt_at, OutboxRow.id)),
    )
    ids: list[int] = []
    with transaction(sessions) as s:
        for due, order in kinds:
            if len(ids) >= limit:
                break
            pick = (select(OutboxRow.id).where(due).order_by(*order).limit(limit - len(ids))
                    .with_for_update(skip_locked=True).scalar_subquery())
            ids += s.connection().execute(
                update(table).where(table.c.id.in_(pick))
                .values(status=SENDING, lease_until=now + lease,
                        attempts=table.c.attempts + 1)
                .returning(table.c.id)).scalars().all()
    return sorted(ids)


def release(sessions: sessionmaker[Session], ids: list[int]) -> None:
    """Give claimed rows that were never sent back to the queue, due now: the claim's
    attempt did not happen."""
    if ids:
        table = OutboxRow.__table__
        with transaction(sessions) as s:
            s.connection().execute(
                update(table).where(table.c.id.in_(ids), table.c.status == SENDING)
                .values(status=PENDING, lease_until=None, attempts=table.c.attempts - 1))


_Marks = GroupCommit[tuple[OutboxRow, str]]  # (row, the server's 250 line)


class _Dropped(Exception):
    """The SMTP connection went away in the middle of a batch."""


class OutboxSender:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], composer: Composer,
                 clock: Clock, transport: Callable[[], SmtpTransport] | None = None,
                 render_processes: int = 0):
        self.settings = settings
        self.sessions = sessions
        self.composer = composer
        self.clock = clock
        self.transport = transport or (lambda: SmtpTransport(settings.smtp))
        self.renderer = RenderPool(settings, composer, render_processes)
        # "Sent" marks commit without waiting for the disk (see relaxed_engine).
        self._marks_engine = relaxed_engine(sessions.kw["bind"])
        # Every database write of the sender runs on this one thread, in order: its
        # connections never wait on each other for SQLite's write lock (whose busy
        # handler sleeps in steps of up to 100 ms).
        self._db = ThreadPoolExecutor(1, thread_name_prefix="outbox-db")
        # Told of each row's outcome once it is recorded: (kind, "sent" | "retrying" |
        # "failed", seconds from queued to sent, else None). Metrics listen (issue 15).
        self.on_result: Callable[[str, str, float | None], None] | None = None
        # Set by the daemon on SIGTERM: claim nothing more; what is claimed is sent and
        # marked, so a graceful stop leaves no mail waiting for its lease.
        self.stopping = False

    def start(self) -> None:
        """Boot the render worker (the daemon does at start-up; otherwise the first
        batch does)."""
        self.renderer.start()

    def close(self) -> None:
        self.renderer.close()
        self._db.shutdown()
        self._marks_engine.dispose()

    async def _in_db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def deliver_due(self, limit: int = 20) -> DeliveryReport:
        """One pass: every row due now (including rows that become due during the pass),
        over ``smtp.connections`` connections, each claiming ``limit`` rows at a time."""
        report = DeliveryReport()
        marks: _Marks = GroupCommit(lambda sent: self._record_sent(sent, report), self._in_db)
        outcomes = await asyncio.gather(*(self._connection(report, marks, limit)
                                          for _ in range(self.settings.smtp.connections)),
                                        return_exceptions=True)
        # The other connections finish their batches first; then the first error counts.
        for failed in outcomes:
            if isinstance(failed, BaseException):
                raise failed
        return report

    async def _batch(self, report: DeliveryReport, limit: int) -> list[OutboxRow]:
        """Claim, render and store the next rows to send; [] when nothing is due."""
        while not self.stopping:
            ids = await self._in_db(claim, self.sessions, self.clock.now(),
                                    self.settings.outbox.lease, limit)
            if not ids:
                return []
            rows = await self._in_db(self._prepare, ids, report)
            todo = [r for r in rows if r.raw is None]
            if todo:
                rendered = await self.renderer.render(todo, self.clock.now())
                await self._in_db(self._store, todo, rendered, report)
            ready = [r for r in rows if r.raw is not None]
            if ready:
                return ready
        return []

    async def _connection(self, report: DeliveryReport, marks: _Marks, limit: int) -> None:
        """One SMTP connection: send a batch while the next is claimed and rendered,
        until nothing is due or the connection keeps failing (its back-off is its own;
        the rows it could not send go back to the queue for the other connections)."""
        failures = 0
        held: list[OutboxRow] = []  # claimed and rendered, not yet handed to the server
        ahead: asyncio.Task[list[OutboxRow]] | None = None
        try:
            held = await self._batch(report, limit)
            while held and failures < _CONNECTION_TRIES:
                try:
                    async with self.transport() as smtp:
                        while held and failures < _CONNECTION_TRIES:
                            ahead = asyncio.create_task(self._batch(report, limit))
                            failures = await self._send_all(smtp, held, report, marks,
                                                             failures)
                            held += await ahead
                            ahead = None
                except DeliveryError as exc:  # could not connect or log in: these wait
                    log.warning("SMTP unavailable, %d mail(s) wait: %s", len(held), exc)
                    await self._in_db(self._record_failure, held, exc, report)
                    held = []
                except _Dropped:
                    if ahead is not None:
                        held += await ahead
                        ahead = None
                    await self._in_db(release, self.sessions, [r.id for r in held])
                    held = []
                    if failures < _CONNECTION_TRIES:
                        await asyncio.sleep(_CONNECTION_PAUSE * 2 ** (failures - 1))
                        held = await self._batch(report, limit)
        finally:
            if ahead is not None:
                # Stopped by an error or cancelled: rows it claimed wait for their lease.
                ahead.cancel()
            if held:
                await self._in_db(release, self.sessions, [r.id for r in held])

    async def _send_all(self, smtp: SmtpTransport, held: list[OutboxRow],
                        report: DeliveryReport, marks: _Marks, failures: int) -> int:
        """Send ``held`` in order, taking each row out as it goes to the server; return
        the connection's temporary failures in a row. A row in flight is never handed
        back: if we stop there, it waits for its lease (it may have been delivered).

        A mail's DATA goes out only once the previous mail's mark is committed: at most
        one mail per connection is ever delivered and not yet recorded. Its MAIL and
        RCPT do not wait (the server takes nothing before DATA ends), so the mark's
        commit overlaps their round trips instead of adding to every mail."""
        marking: asyncio.Task[None] | None = None  # the previous mail's mark
        try:
            while held:
                row = held.pop(0)
                assert row.raw is not None
                try:
                    await smtp.start(row.mail_from, row.recipient, row.raw)
                    if marking is not None:
                        try:
                            await marking
                        except BaseException:
                            held.insert(0, row)  # never sent: back to the queue
                            raise
                        finally:
                            marking = None
                    answer = await smtp.finish(row.recipient, row.raw)
                except DeliveryError as exc:
                    await self._in_db(self._record_failure, [row], exc, report)
                    if exc.permanent:
                        continue
                    failures += 1
                    if "connection" in str(exc).lower():
                        raise _Dropped from None
                    if failures >= _CONNECTION_TRIES or not held:
                        return failures
                    await asyncio.sleep(_CONNECTION_PAUSE * 2 ** (failures - 1))
                    continue
                failures = 0
                marking = asyncio.create_task(marks.add((row, answer)))
        finally:
            if marking is not None:
                await marking
        return failures

    def _prepare(self, ids: list[int], report: DeliveryReport) -> list[OutboxRow]:
        """Load claimed rows; fail those to suppressed addresses before any rendering."""
        now = self.clock.now()
        with transaction(self.sessions) as s:
            rows = s.scalars(select(OutboxRow).where(OutboxRow.id.in_(ids))
                             .options(undefer(OutboxRow.raw)).order_by(OutboxRow.id)).all()
            suppressed = dict(s.execute(select(Suppression.address, Suppression.reason)
                                        .where(Suppression.address.in_(
                                            {r.recipient for r in rows}))).all())
            ready, effects = [], []
            for row in rows:
                if row.kind in CUSTOMER_KINDS and row.recipient in suppressed:
                    effects.append(_failed(row, f"not sent: {row.recipient} is suppressed "
                                                f"({suppressed[row.recipient]})", False))
                    report.failed.append(row.id)
                    continue
                ready.append(row)
            apply(s, effects, self._ctx(now))
        return ready

    def _store(self, rows: list[OutboxRow], rendered: list[Any],
               report: DeliveryReport) -> None:
        """Keep the bytes before any is sent (retries send the same); a template error
        is the administrator's to fix: that row waits, with back-off, instead of
        sending a broken mail."""
        now = self.clock.now()
        with transaction(self.sessions) as s:
            done = [{"id": row.id, "raw": out} for row, out in zip(rows, rendered, strict=True)
                    if isinstance(out, bytes)]
            if done:
                s.execute(update(OutboxRow), done)
            effects: list[Effect] = []
            for row, out in zip(rows, rendered, strict=True):
                if isinstance(out, bytes):
                    row.raw = out
                    continue
                effects.append(self._retry(row, f"template error: {out}", now))
                report.retrying.append(row.id)
                log.error("outbox %s: template error: %s", row.id, out)
            apply(s, effects, self._ctx(now))

    def _record_sent(self, sent: list[tuple[OutboxRow, str]], report: DeliveryReport) -> None:
        """Mark rows sent, with their ``mail-sent`` events, in one transaction (a group
        commit of every connection's 250s). A mark is on the sending path: keep what
        ``apply`` does here batched and cheap (bench/RESULTS.md, end to end)."""
        now = self.clock.now()
        with self._marks_engine.begin() as conn:
            apply_marks(conn, [MailSent(row.id, row.ticket_id, row.kind, row.recipient,
                                        row.message_id, answer) for row, answer in sent],
                        self._ctx(now))
        for row, _ in sent:
            report.sent.append(row.id)
            log.info("sent outbox %s (%s) to %s", row.id, row.kind, row.recipient)
            if self.on_result is not None:
                self.on_result(row.kind, SENT, (now - row.created_at).total_seconds()
                               if row.created_at else None)

    def _record_failure(self, rows: list[OutboxRow], exc: DeliveryError,
                        report: DeliveryReport) -> None:
        now = self.clock.now()
        with transaction(self.sessions) as s:
            effects: list[Effect] = []
            for row in rows:
                attempts = s.scalar(select(OutboxRow.attempts).where(OutboxRow.id == row.id))
                row.attempts = attempts or row.attempts
                if exc.permanent or row.attempts >= self.settings.outbox.max_attempts:
                    why = str(exc) if exc.permanent else \
                        f"gave up after {row.attempts} attempts: {exc}"
                    effects.append(_failed(row, why, exc.permanent))
                    report.failed.append(row.id)
                    log.error("outbox %s to %s failed: %s", row.id, row.recipient, why)
                else:
                    retry = self._retry(row, str(exc), now)
                    effects.append(retry)
                    report.retrying.append(row.id)
                    log.warning("outbox %s to %s will be retried at %s: %s", row.id,
                                row.recipient, retry.next_attempt_at, exc)
                if self.on_result is not None:
                    self.on_result(row.kind, FAILED if row.id in report.failed else
                                   "retrying", None)
            apply(s, effects, self._ctx(now))

    def _ctx(self, now: datetime) -> ApplyContext:
        return apply_context(self.settings, now)

    def _retry(self, row: OutboxRow, why: str, now: datetime) -> MailRetry:
        st = self.settings.outbox
        return MailRetry(row.id, why, now + backoff(row.attempts, st.retry_initial,
                                                    st.retry_max), row.ticket_id)


def _failed(row: OutboxRow, why: str, permanent: bool) -> MailFailed:
    """A permanent refusal of customer mail suppresses the address (apply decides by
    kind: tier and staff mail is not ours to suppress)."""
    return MailFailed(row.id, row.ticket_id, row.kind, row.recipient, why, suppress=permanent)
