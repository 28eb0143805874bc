"""Escalation scheduler tick: 1,000,000 open tickets, 1,000 of them due.

Measures one ``Scheduler.tick`` over a database holding N open tickets of which D are
due now (each due ticket has its opened event, so a first-response step fires), and
splits the time into the pure part (clocks, due steps and the next step time computed
in Python, measured separately on the same histories) and the rest (the indexed range
query, loading the due tickets' events, building the effects and the state changes:
events, outbox rows, stored clocks, fired steps, next due times). Mail rendering is
not part of a tick: it happens in the sender.

    .venv/bin/python bench/escalation.py [--tickets 1000000] [--due 1000] [--db URL]
                                         [--template FILE] [--scenario steady]

``--scenario``: ``catch-up`` (the default, as in every figure before 2026-11-25's third
session) opens the due tickets two days ago, so each has its reminder and its missed
step due at once, as after downtime; ``steady`` opens each so that only its reminder is
due, as in a daemon that runs all along, with the clocks its first look stored.

``--template FILE`` (SQLite) keeps the preloaded database there and ticks on a fresh
copy of it each run: preloading a million tickets takes longer than the tick, and runs
that alternate between two versions of the code should start from the same file. With
a PostgreSQL ``--db`` the bench creates a database of its own on that server and drops
it at the end; the one named in the URL is only used to connect.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Text, cast, create_engine, func, insert, select, text

from mailflow import config as config_mod
from mailflow.businesshours import business_time_between
from mailflow.escalation_chain import plan_steps
from mailflow.scheduler import Scheduler, _clock_rows, _load
from mailflow.sla_history import facts_of
from mailflow.sla_policy import load_sla
from mailflow.slaclock import Opened, ticket_clocks
from mailflow.store.db import make_engine, upgrade
from mailflow.store.models import (
    EscalationStep,
    OutboxContext,
    OutboxRow,
    Ticket,
    TicketClock,
    TicketEvent,
)

RULES = Path(__file__).resolve().parents[1] / "rules"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday afternoon


def preload(url: str, n: int, due: int, scenario: str = "catch-up") -> float:
    engine = make_engine(url)
    upgrade(engine)
    opened = steady_openings(due) if scenario == "steady" else {}

    def created(i: int) -> datetime:
        # Two days old, opened seven seconds apart (over two hours for 1,000 due): as
        # real tickets are, rather than all at one instant, which would let every
        # memoised timestamp and calendar walk look better than it is.
        return opened.get(i) or NOW - timedelta(days=2, seconds=7 * i)

    later = NOW + timedelta(days=30)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for start in range(1, n + 1, 20000):
            ids = range(start, min(n + 1, start + 20000))
            conn.execute(insert(Ticket), [
                {"id": i, "subject": f"ticket {i}", "requester": f"c{i}@customers.example",
                 "status": "open", "severity": 3, "category": "technical",
                 "owner_group": "frontline", "tags": [], "reply_token": f"t{i:011d}",
                 "reopen_count": 0, "created_at": created(i), "updated_at": created(i),
                 "next_due_at": (NOW - timedelta(minutes=1)) if i <= due else later}
                for i in ids])
        conn.execute(insert(TicketEvent), [
            {"ticket_id": i, "kind": "opened", "at": created(i), "actor": f"c{i}@x",
             "summary": "opened", "data": {"severity": 3, "category": "technical",
                                           "owner_group": "frontline"}}
            for i in range(1, due + 1)])
        if opened:
            # In a daemon that runs all along, the scheduler's first look at each ticket
            # (just after it opened) stored its clocks; the reminder's tick finds them.
            sla = load_sla(RULES, tz=UTC)
            conn.execute(insert(TicketClock), [
                row for i in range(1, due + 1) for row in _clock_rows(i, ticket_clocks(
                    [Opened(created(i), 3, "technical", "frontline", f"c{i}@x")], sla,
                    created(i)))])
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return time.perf_counter() - t0


def steady_openings(due: int) -> dict[int, datetime]:
    """Opening times at which each due ticket has used 78-98 % of its first-response
    target by NOW: its reminder (at 75 %) is due and nothing else, as in a daemon that
    runs all along, where a ticket's steps come due one at a time."""
    pol = load_sla(RULES, tz=UTC).policy_for(3, "technical", "frontline", "")
    target = pol.target("first_response")
    assert target is not None
    out = {}
    for i in range(1, due + 1):
        want = target.business * (0.78 + 0.2 * i / due)
        lo, hi = NOW - timedelta(days=30), NOW  # business time from lo is too much
        while hi - lo > timedelta(seconds=1):
            mid = lo + (hi - lo) / 2
            if business_time_between(pol.calendar, mid, NOW) > want:
                lo = mid
            else:
                hi = mid
        out[i] = hi.replace(microsecond=0)
    return out


@contextmanager
def database(args: argparse.Namespace, work: Path) -> Iterator[str]:
    """The URL to tick on: a copy of the SQLite template, a temporary SQLite file, or a
    PostgreSQL database of the bench's own (dropped afterwards)."""
    if args.db and args.db.startswith("postgresql"):
        name = f"mf_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(args.db, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = args.db.rsplit("/", 1)[0] + f"/{name}"
            report_preload(url, args)
            yield url
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    if args.template:
        template = Path(args.template)
        if not template.exists():
            report_preload(f"sqlite:///{template}", args)
        with make_engine(f"sqlite:///{template}").connect() as c:
            n = c.scalar(select(func.count()).select_from(Ticket))
            due = c.scalar(select(func.count()).select_from(Ticket)
                           .where(Ticket.next_due_at <= NOW))
            first = c.scalar(select(Ticket.created_at).where(Ticket.id == 1))
        # Catch-up tickets are two days old; steady ones opened within the last day.
        if first is not None and first.tzinfo is None:
            first = first.replace(tzinfo=UTC)
        scenario = "catch-up" if first is not None and \
            NOW - first >= timedelta(days=2) else "steady"
        if (n, due, scenario) != (args.tickets, args.due, args.scenario):
            sys.exit(f"{template} holds {n} tickets ({due} due, {scenario}), not "
                     f"{args.tickets} ({args.due} due, {args.scenario}): give another "
                     "--template")
        shutil.copyfile(template, work / "bench.db")
        print(f"a copy of {template}: {n} open tickets ({due} due)")
        settle()
        yield f"sqlite:///{work / 'bench.db'}"
        return
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    report_preload(url, args)
    settle()
    yield url


def settle() -> None:
    """Write the preloaded (or copied) file out before the tick: the tick's commit syncs
    to disk, and with hundreds of megabytes still dirty that sync waits for them too."""
    os.sync()
    time.sleep(1)


def report_preload(url: str, args: argparse.Namespace) -> None:
    print(f"preloading {args.tickets} open tickets ({args.due} due) into {url.split(':')[0]}")
    print(f"  took {preload(url, args.tickets, args.due, args.scenario):.1f}s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--due", type=int, default=1000)
    ap.add_argument("--db", default=None)
    ap.add_argument("--scenario", choices=("catch-up", "steady"), default="catch-up",
                    help="catch-up: two days old, every first-response step due at once "
                         "(after downtime); steady: each due ticket at its reminder only")
    ap.add_argument("--template", default=None,
                    help="SQLite file to keep the preloaded database in and copy per run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailflow-bench-esc-"))
    try:
        with database(args, work) as url:
            run(url, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(url: str, args: argparse.Namespace, work: Path) -> None:
    settings = config_mod.validate({"database": url, "support_address": "support@example.test",
                                    "rules_dir": str(RULES)}, base_dir=work)
    engine = make_engine(url)
    from mailflow.store.db import session_factory

    sessions = session_factory(engine)
    sched = Scheduler(settings, sessions)
    gc.freeze()  # as `mailflow run` does once it has started
    pol = sched.policies.current
    assert pol is not None
    # The pure part alone, on the same histories, before the tick changes them.
    with sessions() as s:
        ids = [r for r in s.scalars(select(Ticket.id).where(Ticket.next_due_at <= NOW))]
        events, kinds, fired = _load(s, ids)
    t0, c0 = time.perf_counter(), time.process_time()
    steps = 0
    for tid in ids:
        tc = ticket_clocks(facts_of(events[tid], f"c{tid}@x", kinds), pol.sla, NOW,
                           pol.accept_within())
        steps += len(plan_steps(pol.escalation, tc, fired[tid], NOW).due)
    pure, pure_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    res = sched.tick(NOW, limit=args.due)
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    with sessions() as s:
        fired_rows = s.scalar(select(func.count()).select_from(EscalationStep))
        left = s.scalar(select(func.count()).select_from(Ticket)
                        .where(Ticket.next_due_at <= NOW))
        # What the mails' contexts cost in bytes: per row, and stored once (shared).
        ctx_bytes = s.scalar(select(func.sum(func.length(cast(OutboxRow.context, Text)))))
        shared, shared_bytes = s.execute(select(
            func.count(), func.sum(func.length(cast(OutboxContext.context, Text))))).one()
    print(f"tick: {res.looked} due tickets, {len(res.fired)} steps fired ({fired_rows} rows), "
          f"{res.queued} mails queued, {left} still due")
    print(f"  mail contexts: {ctx_bytes or 0:,} bytes in the outbox rows, {shared or 0:,} "
          f"shared contexts of {shared_bytes or 0:,} bytes")
    print(f"  total {total * 1000:.0f} ms = pure clocks/steps {pure * 1000:.0f} ms "
          f"({steps} steps) + query and state changes {(total - pure) * 1000:.0f} ms")
    # CPU time of this process: less disturbed by other work on a shared machine than
    # the wall clock (the commit's wait for the disk is not in it).
    print(f"  CPU {total_cpu * 1000:.0f} ms = pure {pure_cpu * 1000:.0f} ms + query and "
          f"state changes {(total_cpu - pure_cpu) * 1000:.0f} ms")
    t0 = time.perf_counter()
    empty = sched.tick(NOW)
    print(f"an idle tick (nothing due among {args.tickets}): "
          f"{(time.perf_counter() - t0) * 1000:.1f} ms, looked at {empty.looked}")
    engine.dispose()


if __name__ == "__main__":
    main()
