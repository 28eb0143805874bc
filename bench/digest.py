"""The daily digest over a large store: 1,000,000 tickets and 30 days of events, SQLite.

Synthetic rows are bulk-inserted with Core executemany (not timed): tickets spread over
the 31 days up to the reported day, each with its opened event (1-2 rule hits), most
with a response (a sent status-update), a resolution, some with customer follow-ups,
waits, reopens, referrals, escalations, ratings, and a first-response clock in
``ticket_clocks`` (created here in the shape the SLA clocks use). Measured: everything
``queue_digest`` reads and computes for one day, i.e. :func:`mailflow.digest.send.collect`
plus the template context, and rendering both parts; target under 5 s.

    .venv/bin/python bench/digest.py [--tickets 1000000] [--db PATH]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

from mailflow.compose import Composer
from mailflow.digest.report import Params, context
from mailflow.digest.send import collect
from mailflow.store.db import make_engine, session_factory, upgrade
from mailflow.store.models import OutboxRow, Referral, Ticket, TicketEvent

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
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--db", default=None, help="reuse (or create) this SQLite file")
    args = ap.parse_args()
    path = Path(args.db) if args.db else Path(tempfile.mkdtemp()) / "digest.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        t0 = time.perf_counter()
        fill(url, args.tickets)
        print(f"filled {args.tickets:,} tickets in {time.perf_counter() - t0:.0f}s "
              f"({path.stat().st_size / 2**20:.0f} MiB)", file=sys.stderr)
    engine = make_engine(url)
    sessions = session_factory(engine)
    p = Params(targets={1: timedelta(hours=1), 2: timedelta(hours=4), 3: timedelta(days=1)},
               accept_within={("tier2", s): timedelta(hours=1) for s in (1, 2, 3)},
               known_rules=RULES)
    now = END + timedelta(hours=7)
    composer = Composer(None)
    times = []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        with sessions() as s:
            inputs = collect(s, DAY, p, now)
        t1 = time.perf_counter()
        ctx = context(inputs, p)
        composer.render("digest", ctx)
        t2, c2 = time.perf_counter(), time.process_time()
        # CPU time too: on a shared machine the wall time includes waiting for a core.
        times.append((t2 - t0, t1 - t0, t2 - t1, c2 - c0))
        print(f"digest: {t2 - t0:.2f}s wall, {c2 - c0:.2f}s CPU (queries {t1 - t0:.2f}s, "
              f"compute and render {t2 - t1:.2f}s); {len(inputs.tickets):,} tickets "
              "touched on the day", file=sys.stderr)
    best = min(times)
    print(f"tickets={args.tickets} best={best[0]:.2f}s cpu={best[3]:.2f}s "
          f"queries={best[1]:.2f}s compute+render={best[2]:.2f}s "
          f"opened={inputs.counts.opened} month_opened={inputs.month.opened}")


if __name__ == "__main__":
    main()
