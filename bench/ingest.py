"""Ingest throughput: Dovecot INBOX -> committed tickets with acknowledgments queued.

Compares, in the same run and against the same server, with the raw IMAP baseline
(``FETCH BODY.PEEK[]`` in batches of 500 on one connection). Optionally pre-loads the
database with N tickets first, to show the cost does not grow with history.

    .venv/bin/python bench/ingest.py [--messages 10000] [--preload 1000000] [--db URL]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from mailflow import config as config_mod
from mailflow.app import build
from mailflow.mailstack import PASSWORD, MailStack
from mailflow.store.db import make_engine, upgrade
from mailflow.store.models import Participant, StoredMessage, Ticket

WORDS = ("printer", "server", "login", "password", "invoice", "network", "error", "slow",
         "crash", "update", "screen", "mail", "account", "backup", "license", "report",
         "access", "folder", "restart", "urgent", "please", "help", "today", "customer",
         "order", "website", "database", "timeout")


def _body(rng: random.Random, size: int) -> str:
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize()
        out.append(line + ".")
        n += len(line) + 2
    return "\n".join(out)


def make_messages(n: int, seed: int = 1) -> list[bytes]:
    """1-3 KB plain-text mail from 2,000 senders; every fifth is a reply."""
    rng = random.Random(seed)
    msgs: list[bytes] = []
    ids: list[tuple[str, str, str]] = []
    date = format_datetime(datetime(2026, 1, 5, 9, tzinfo=UTC))
    for i in range(n):
        sender = f"user{rng.randrange(2000)}@customer{rng.randrange(50)}.example"
        mid = f"<bench.{i}.{rng.getrandbits(40):x}@customer.example>"
        headers = [f"From: Customer {i} <{sender}>", "To: support@example.test",
                   f"Date: {date}", f"Message-ID: {mid}", "MIME-Version: 1.0",
                   "Content-Type: text/plain; charset=utf-8",
                   "Content-Transfer-Encoding: 8bit"]
        if i % 5 == 4 and ids:
            osender, omid, osubj = rng.choice(ids)
            headers[0] = f"From: Customer <{osender}>"
            headers += [f"Subject: Re: {osubj}", f"In-Reply-To: {omid}",
                        f"References: {omid}"]
            text = _body(rng, rng.randint(300, 1200)) + "\n\n> earlier text\n> quoted"
        else:
            subj = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))).capitalize()
            headers.append(f"Subject: {subj}")
            ids.append((sender, mid, subj))
            text = _body(rng, rng.randint(700, 2600))
        msgs.append(("\r\n".join(headers) + "\r\n\r\n" + text.replace("\n", "\r\n")
                     + "\r\n").encode())
    return msgs


def preload(url: str, n: int) -> float:
    """Insert n tickets, each with a participant and a stored message, in bulk."""
    engine = make_engine(url)
    now = datetime(2025, 6, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for start in range(1, n + 1, 20000):
            ids = range(start, min(n + 1, start + 20000))
            conn.execute(insert(Ticket), [
                {"id": i, "subject": f"old ticket {i}", "requester": f"old{i}@hist.example",
                 "status": "closed", "severity": 3, "category": "technical",
                 "owner_group": "frontline", "tags": [], "reply_token": f"h{i:011d}",
                 "reopen_count": 0, "created_at": now, "updated_at": now, "closed_at": now}
                for i in ids])
            conn.execute(insert(Participant), [
                {"ticket_id": i, "address": f"old{i}@hist.example", "role": "requester"}
                for i in ids])
            conn.execute(insert(StoredMessage), [
                {"ticket_id": i, "direction": "in", "disposition": "ticket",
                 "message_id": f"old.{i}@hist.example", "dedupe_key": f"{i:064x}",
                 "references": [], "to_addrs": [], "cc_addrs": [], "flags": [],
                 "subject": f"old ticket {i}", "received_at": now, "new_text": "x",
                 "body_text": "x", "raw": b"x"} for i in ids])
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
    if engine.dialect.name == "sqlite":
        # Fold the preload's WAL into the database so the measured run does not pay
        # for checkpointing a gigabyte of someone else's writes.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return time.perf_counter() - t0


def raw_fetch_rate(stack: MailStack, batch: int = 500) -> tuple[int, float]:
    with stack.imap("support@example.test") as c:
        c.select_folder("INBOX", readonly=True)
        uids = sorted(c.search("ALL"))
        t0 = time.perf_counter()
        total = 0
        for i in range(0, len(uids), batch):
            data = c.fetch(uids[i:i + batch], ["BODY.PEEK[]", "INTERNALDATE"])
            total += sum(len(v[b"BODY[]"]) for v in data.values())
        return len(uids), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--preload", type=int, default=0)
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: a temp SQLite)")
    ap.add_argument("--rules", default=None,
                    help="rules folder (default: the shipped rules/); e.g. one whose rules "
                         "refer nothing, to compare with code that had no referrals")
    ap.add_argument("--parse-processes", default="auto",
                    help="ingest.parse_processes: auto (default), 0 = all in one thread")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mailflow-bench-"))
    os.chmod(work, 0o755)
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    stack = MailStack.create(work / "stack", users=["support@example.test"]).start()
    os.environ["MAILFLOW_IMAP_PASSWORD"] = PASSWORD
    try:
        msgs = make_messages(args.messages)
        avg = sum(map(len, msgs)) / len(msgs)
        t0 = time.perf_counter()
        with stack.imap("support@example.test") as c:
            for i in range(0, len(msgs), 200):
                c.multiappend("INBOX", msgs[i:i + 200])
        print(f"appended {len(msgs)} messages (avg {avg:.0f} bytes) in "
              f"{time.perf_counter() - t0:.1f}s")

        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        if args.preload:
            print(f"preloaded {args.preload} tickets in {preload(url, args.preload):.1f}s")

        n, secs = raw_fetch_rate(stack)
        raw_rate = n / secs
        print(f"baseline raw FETCH BODY.PEEK[]: {n} in {secs:.2f}s = {raw_rate:.0f} msg/s")

        settings = config_mod.validate({
            "database": url, "support_address": "support@example.test",
            "imap": {"host": "127.0.0.1", "port": stack.imap_port, "security": "none",
                     "username": "support@example.test",
                     "password_env": "MAILFLOW_IMAP_PASSWORD", "batch_size": 500,
                     # The seeded mail is there before the first look: acknowledge it all,
                     # as the figures before imap.backlog existed did.
                     "backlog": "acknowledge"},
            "acknowledgment": {"max_per_sender_per_hour": 1000},
            "ingest": {"parse_processes": args.parse_processes if args.parse_processes == "auto"
                       else int(args.parse_processes)},
            "rules_dir": args.rules or str(Path(__file__).resolve().parents[1] / "rules"),
        }, base_dir=work)
        app = build(settings)
        w = app.watchers()[0]
        w.connect()
        app.pool.start()  # process start-up is paid once per daemon, not per batch
        gc.freeze()  # as `mailflow run` does once it has started
        t0 = time.perf_counter()
        res = w.cycle()
        secs = time.perf_counter() - t0
        w.close()
        app.close()
        rate = res.fetched / secs
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"mailflow ingest (fetch, parse, link, classify, commit, queue ack, flag): "
              f"{res.fetched} in {secs:.2f}s = {rate:.0f} msg/s; outcomes "
              f"{dict(res.outcomes)}, acks queued {res.new_outbox}")
        print(f"ratio to raw fetch: {rate / raw_rate:.2f}; peak RSS {rss:.0f} MiB "
              f"(this process; parse workers: {app.pool.processes})")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
