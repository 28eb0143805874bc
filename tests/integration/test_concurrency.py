"""Two workers on one PostgreSQL database: no lost update, no acknowledgment over the limit.

Real OS processes (multiprocessing, "spawn"), each with its own engine, started together
at a barrier. SQLite has one writer at a time and is not what these are about.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from mailflow.store.db import make_engine, session_factory, transaction, upgrade
from mailflow.store.models import OutboxRow, Ticket, TicketEvent
from mailflow.tickets import EventKind, OutboxKind
from mailflow.tickets.apply import ApplyContext, apply
from mailflow.tickets.effects import OpenTicket
from tests.conftest import PG_OK, _drop_pg_database, _new_pg_database
from tests.integration import concurrency_workers as workers

pytestmark = pytest.mark.skipif(not PG_OK, reason="needs PostgreSQL")

SPAWN = multiprocessing.get_context("spawn")
START_SEVERITY = 9  # above every severity asked, so each ask may lower it
SENDER = "robot-loop@customer.test"


@pytest.fixture
def pg_url() -> Any:
    url, name = _new_pg_database()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    _drop_pg_database(name)


def _run(target: Any, argsets: list[tuple[Any, ...]], timeout: float = 240) -> list[dict]:
    """Start one process per argument tuple, together; their reports, errors raised."""
    barrier = SPAWN.Barrier(len(argsets))
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*a, barrier, results)) for a in argsets]
    for p in procs:
        p.start()
    reports: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(reports) < len(procs):
        try:
            reports.append(results.get(timeout=1))
        except queue.Empty:
            # A child that died before reporting (an import error) must not cost the
            # whole timeout.
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                pytest.fail(f"worker processes failed or hung (exit codes {dead})")
    for p in procs:
        p.join(timeout=30)
    errors = [r["error"] for r in reports if "error" in r]
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return reports


def _open_tickets(url: str, n: int) -> list[int]:
    engine = make_engine(url)
    sessions = session_factory(engine)
    ctx = ApplyContext(workers.NOW, workers.SUPPORT, "example.test", "SUP")
    with transaction(sessions) as s:
        applied = apply(s, [OpenTicket(
            key=-(i + 1), subject=f"t{i}", requester="c@example.test",
            severity=START_SEVERITY, category="technical", owner_group="frontline",
            reply_token=f"tok{i:04d}", created_at=workers.NOW,
            participants=("c@example.test",), reason="test") for i in range(n)],
            ctx)
    engine.dispose()
    return sorted(applied.ids.values())


def test_reopens_and_severity_raises_from_two_processes_lose_no_update(pg_url: str) -> None:
    ids = _open_tickets(pg_url, 5)
    rounds = 300
    reports = _run(workers.apply_rounds,
                   [(pg_url, ids, rounds, seed) for seed in (1, 2)])
    engine = make_engine(pg_url)
    with session_factory(engine)() as s:
        rows = {t.id: t for t in s.scalars(select(Ticket).where(Ticket.id.in_(ids)))}
        reopened = s.scalar(select(func.count()).select_from(TicketEvent)
                            .where(TicketEvent.kind == str(EventKind.REOPENED))) or 0
    engine.dispose()
    for tid in ids:
        # The serial result: every reopen counted, the lowest severity anyone asked for.
        assert rows[tid].reopen_count == sum(r["reopens"][tid] for r in reports) == 2 * rounds
        assert rows[tid].severity == min(START_SEVERITY,
                                         *(r["lowest"][tid] for r in reports))
    assert reopened == 2 * rounds * len(ids)


def _acks(url: str) -> int:
    engine = make_engine(url)
    with session_factory(engine)() as s:
        n = s.scalar(select(func.count()).select_from(OutboxRow).where(
            OutboxRow.kind == str(OutboxKind.ACKNOWLEDGMENT),
            OutboxRow.recipient == SENDER)) or 0
    engine.dispose()
    return n


def _two_daemons(url: str, batches: int, per_batch: int, limit: int, delay: float,
                 locks: bool) -> tuple[int, int]:
    """(acknowledgments queued for the sender, tickets opened) after both are done."""
    reports = _run(workers.ingest_batches, [
        (url, mailbox, SENDER, batches, per_batch, limit, delay, locks)
        for mailbox in ("INBOX@daemon-a", "INBOX@daemon-b")])
    opened = sum(r["outcomes"].get("new", 0) for r in reports)
    return _acks(url), opened


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_two_daemons_never_exceed_the_ack_limit(pg_url: str, delay: float) -> None:
    limit, batches, per_batch = 3, 12 if delay == 0 else 5, 2
    acks, opened = _two_daemons(pg_url, batches, per_batch, limit, delay, locks=True)
    assert opened == 2 * batches * per_batch  # every mail became a ticket
    assert acks == limit  # never above it, and the limit is reached


def test_without_the_locks_two_daemons_can_exceed_the_ack_limit() -> None:
    """The same scenario with store.facts' PostgreSQL locks monkeypatched off in the
    workers: both read "no acknowledgment yet" and both queue. This is what the test
    above would see if the locks went missing. The read-to-write window is held open
    (0.2 s) in both tests, so the race is near certain; three tries keep a badly
    overloaded machine from making it flaky."""
    limit, seen = 3, []
    for _ in range(3):
        url, name = _new_pg_database()
        try:
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            acks, opened = _two_daemons(url, 5, 2, limit, 0.2, locks=False)
        finally:
            _drop_pg_database(name)
        assert opened == 20
        seen.append(acks)
        if acks > limit:
            break
    assert max(seen) > limit, f"acknowledgments without locks: {seen}"


def test_apply_to_two_tickets_in_crossed_order_does_not_deadlock(pg_url: str) -> None:
    a, b = _open_tickets(pg_url, 2)
    reports = _run(workers.apply_crossed, [(pg_url, a, b, 150), (pg_url, b, a, 150)])
    assert sum(r["deadlocks"] for r in reports) == 0
