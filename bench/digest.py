"""The daily digest over a large store: 1,000,000 tickets and 30 days of events, SQLite.

Synthetic rows are bulk-inserted with Core executemany (not timed): tickets spread over
the 31 days up to the reported day, each with its opened event (1-2 rule hits), most
with a response (a sent status-update), a resolution, some with customer follow-ups,
waits, reopens, referrals, escalations, ratings, and a first-response clock in
``ticket_clocks``; event ids in time order, as in a store written day by day.
Measured: what ``queue_digest`` reads, stores and computes for one day, i.e.
:func:`mailflow.digest.send.read`, storing the closed days' figures, the template context
and rendering both parts; wall and CPU time, with the load average. Twice:

- cold: no day stored yet (the first digest after the upgrade): 31 days counted;
- steady: the rows the previous morning's digest left (counted with the events up to
  07:00 on the reported day); the events written since are checked and the days they
  touch counted again. Target under 5 s.

    .venv/bin/python bench/digest.py [--tickets 1000000] [--db PATH] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, func, select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.compose import Composer
from mailflow.digest import stored
from mailflow.digest.report import Params, context
from mailflow.digest.send import read
from mailflow.store.db import make_engine, session_factory, upgrade
from mailflow.store.models import DigestDay, OutboxRow, Referral, Ticket, TicketEvent

DAY = date(2026, 11, 24)
END = datetime(2026, 11, 25, tzinfo=UTC)
RULES = [f"rule-{i}" for i in range(40)]
GROUPS = ["tier2", "vendor-acme", "management"]


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None)


def fill(url: str, n: int, seed: int = 13) -> None:
    rng = random.Random(seed)
    engine = make_engine(url)
    upgrade(engine)
    md = MetaData()
    clocks = Table("ticket_clocks", md, Column("ticket_id", Integer, primary_key=True),
                   Column("kind", String(24), primary_key=True),
                   Column("episode", Integer, primary_key=True), Column("policy", String(100)),
                   Column("severity", Integer), Column("owner_group", String(100)),
                   Column("started_at", DateTime), Column("due_at", DateTime),
                   Column("stopped_at", DateTime), Column("state", String(16)),
                   Column("paused_seconds", Integer, nullable=False, default=0))
    md.create_all(engine)  # no-op once the SLA clocks migration has created it
    span = 31 * 86400
    batch = 50_000
    with engine.begin() as conn:
        for lo in range(1, n + 1, batch):
            tickets: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            outbox: list[dict[str, Any]] = []
            refs: list[dict[str, Any]] = []
            clk: list[dict[str, Any]] = []
            for tid in range(lo, min(lo + batch, n + 1)):
                created = END - timedelta(seconds=rng.randrange(span))
                sev = rng.choice((1, 2, 3, 3, 3))
                cat = rng.choice(("technical", "technical", "administrative"))
                owner = rng.choice(GROUPS) if rng.random() < 0.1 else None
                resolved = created + timedelta(minutes=rng.randrange(30, 4000))
                status = "resolved" if resolved < END and rng.random() < 0.9 else "open"
                responded = created + timedelta(minutes=rng.randrange(5, 600))
                tickets.append({
                    "id": tid, "subject": "s", "requester": f"c{rng.randrange(50000)}@x.test",
                    "status": status, "severity": sev, "category": cat, "owner_group": owner,
                    "tags": [], "reply_token": f"t{tid}", "reopen_count": 0,
                    "created_at": created, "updated_at": created,
                    "resolved_at": resolved if status == "resolved" else None})

                def ev(kind: str, at: datetime, **data: Any) -> None:
                    events.append({"ticket_id": tid, "kind": kind, "at": at,  # noqa: B023
                                   "actor": "mailflow", "summary": "", "data": data})

                ev("opened", created, severity=sev, category=cat, owner_group=owner,
                   rules=rng.sample(RULES, rng.choice((0, 1, 1, 2))))
                if responded < END:
                    outbox.append({
                        "ticket_id": tid, "kind": "status-update", "mail_from": "s@x.test",
                        "recipient": "c@x.test", "message_id": f"m{tid}@x.test",
                        "template": "status-update", "context": {}, "status": "sent",
                        "attempts": 1, "next_attempt_at": responded, "created_at": responded,
                        "sent_at": responded})
                if rng.random() < 0.4:
                    ev("customer-message", created + (responded - created) * 1.5)
                if rng.random() < 0.1:
                    ev("status-changed", created + timedelta(minutes=20), status="waiting")
                    ev("status-changed", created + timedelta(minutes=90), status="open")
                if status == "resolved":
                    ev("status-changed", resolved, status="resolved")
                    if rng.random() < 0.03:
                        ev("reopened", resolved + timedelta(hours=5))
                    if rng.random() < 0.1:
                        ev("note", resolved + timedelta(hours=2), what="rating",
                           value=rng.randrange(1, 6))
                if owner and rng.random() < 0.5:
                    refs.append({"ticket_id": tid, "group": owner, "token": f"r{tid}",
                                 "reason": "", "created_at": created + timedelta(minutes=10),
                                 "accepted_at": created + timedelta(minutes=40),
                                 "ended_at": resolved if status == "resolved" else None})
                if rng.random() < 0.02:
                    age = rng.randrange(600, 40000)
                    ev("escalated", created + timedelta(seconds=age), step="remind",
                       reason=rng.choice(("first response due", "update overdue")),
                       age_seconds=age, late=False)
                due = created + timedelta(hours=(1, 4, 24)[sev - 1])
                met = responded <= due
                clk.append({"ticket_id": tid, "kind": "first_response", "episode": 1,
                            "policy": "p", "severity": sev, "owner_group": owner,
                            "started_at": _naive(created), "due_at": _naive(due),
                            "stopped_at": _naive(responded) if met else None,
                            "state": "met" if met else "breached", "paused_seconds": 0})
            conn.execute(Ticket.__table__.insert(), tickets)
            conn.execute(TicketEvent.__table__.insert(), events)
            conn.execute(OutboxRow.__table__.insert(), outbox)
            if refs:
                conn.execute(Referral.__table__.insert(), refs)
            conn.execute(clocks.insert(), clk)
            print(f"  {min(lo + batch - 1, n):,} tickets", file=sys.stderr, flush=True)
    order_events(engine)
    engine.dispose()


def order_events(engine: Engine) -> None:
    """Event ids in time order, as a store written day by day has them: the digest
    checks the events written since its previous run by id (``digest.stored``)."""
    cols = "ticket_id, at, kind, actor, summary, data"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TEMP TABLE ev AS SELECT {cols} FROM ticket_events "
                             "ORDER BY at, id")
        conn.exec_driver_sql("DROP INDEX ix_ticket_events_kind_at")
        conn.exec_driver_sql("DROP INDEX ix_ticket_events_ticket_id_id")
        conn.exec_driver_sql("DELETE FROM ticket_events")
        conn.exec_driver_sql(f"INSERT INTO ticket_events ({cols}) SELECT {cols} FROM ev "
                             "ORDER BY rowid")
        conn.exec_driver_sql("DROP TABLE ev")
        conn.exec_driver_sql("CREATE INDEX ix_ticket_events_kind_at ON ticket_events "
                             "(kind, at)")
        conn.exec_driver_sql("CREATE INDEX ix_ticket_events_ticket_id_id ON ticket_events "
                             "(ticket_id, id)")


def _load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _time(sessions: sessionmaker[Session], p: Params, now: datetime, composer: Composer,
          label: str) -> tuple[float, float, int, int]:
    """One digest of DAY as the daemon makes it: the reads, storing the closed days'
    figures, the template context and both parts rendered."""
    t0, c0 = time.perf_counter(), time.process_time()
    with sessions() as s:
        inputs, month = read(s, DAY, p, now)
    stored.save(sessions, stored.basis(p.tz, p.fcr_window, p.early), month.save)
    t1 = time.perf_counter()
    composer.render("digest", context(inputs, p))
    t2, c2 = time.perf_counter(), time.process_time()
    # CPU time too: on a shared machine the wall time includes waiting for a core.
    print(f"{label}: {t2 - t0:.2f}s wall, {c2 - c0:.2f}s CPU (queries and storing "
          f"{t1 - t0:.2f}s, compute and render {t2 - t1:.2f}s); {len(month.counted)} of "
          f"31 days counted, {len(month.cohorts)} more for their opened tickets only; "
          f"{len(inputs.tickets):,} tickets touched on the day; {_load()}", file=sys.stderr)
    assert inputs.month.opened > 0
    return t2 - t0, c2 - c0, len(month.counted), len(month.cohorts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--db", default=None, help="reuse (or create) this SQLite file")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    path = Path(args.db) if args.db else Path(tempfile.mkdtemp()) / "digest.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        t0 = time.perf_counter()
        fill(url, args.tickets)
        print(f"filled {args.tickets:,} tickets in {time.perf_counter() - t0:.0f}s "
              f"({path.stat().st_size / 2**20:.0f} MiB)", file=sys.stderr)
    engine = make_engine(url)
    upgrade(engine)  # a file filled by an older version gets the digest's table and indexes
    sessions = session_factory(engine)
    p = Params(targets={1: timedelta(hours=1), 2: timedelta(hours=4), 3: timedelta(days=1)},
               accept_within={("tier2", s): timedelta(hours=1) for s in (1, 2, 3)},
               known_rules=RULES)
    now = END + timedelta(hours=7)
    composer = Composer(None)
    D = cast(Table, DigestDay.__table__)

    # Cold: no day stored yet (the first digest after the upgrade): 31 days counted.
    cold = []
    for _ in range(max(1, args.runs - 1)):
        with sessions.begin() as s:
            s.execute(D.delete())
        cold.append(_time(sessions, p, now, composer, "cold"))

    # Steady state: the rows the previous morning's digest (of DAY - 1, at 07:00 on DAY)
    # left, i.e. counted with the events written up to then; everything written since
    # is checked, and the days it touches are counted again.
    before = END - timedelta(days=1) + timedelta(hours=7)
    with sessions() as s:
        _, month = read(s, DAY - timedelta(days=1), p, before)
        seen = int(s.scalar(select(func.max(TicketEvent.id))
                            .where(TicketEvent.at < before)) or 0)
    previous = [{"day": r.day, "basis": stored.basis(p.tz, p.fcr_window, p.early),
                 "counts": stored.to_json(r.counts), "rule_hits": dict(r.hits),
                 "events_upto": seen, "events_seen": seen, "computed_at": before}
                for r in month.save]
    steady = []
    for _ in range(args.runs):
        with sessions.begin() as s:
            s.execute(D.delete())
            s.execute(D.insert(), previous)
        steady.append(_time(sessions, p, now, composer, "steady"))
    c, w = min(cold, key=lambda x: x[1]), min(steady, key=lambda x: x[1])
    print(f"tickets={args.tickets} cold: {c[0]:.2f}s wall {c[1]:.2f}s CPU; steady: "
          f"{w[0]:.2f}s wall {w[1]:.2f}s CPU, {w[2]} of 31 days counted, {w[3]} for their "
          f"opened tickets only; {_load()}")


if __name__ == "__main__":
    main()
