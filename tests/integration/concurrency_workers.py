"""What the child processes of test_concurrency.py run (spawned: they import this module,
not the test module, so they start without pytest's collection).

Each worker waits at a barrier so both really run at once, and reports through a queue
what it asked for, so the test can compute the serial result.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
SUPPORT = "support@example.test"
RULES = str(Path(__file__).resolve().parent.parent.parent / "rules")


def apply_rounds(url: str, ticket_ids: list[int], rounds: int, seed: int, barrier: Any,
                 results: Any) -> None:
    """``rounds`` transactions, each applying a Reopen and a raise-only SetSeverity to
    every ticket (in id order, as ingest's row locks are taken); reports the reopens
    and the lowest severity asked per ticket."""
    try:
        from mailflow.store.db import make_engine, session_factory, transaction
        from mailflow.tickets.apply import ApplyContext, apply
        from mailflow.tickets.effects import Effect, Reopen, SetSeverity

        engine = make_engine(url)
        sessions = session_factory(engine)
        ctx = ApplyContext(NOW, SUPPORT, "example.test", "SUP")
        rng = random.Random(seed)
        lowest = {t: 1 << 30 for t in ticket_ids}
        reopens = Counter[int]()
        barrier.wait(timeout=60)
        for _ in range(rounds):
            effects: list[Effect] = []
            for k, t in enumerate(sorted(ticket_ids)):
                # Each ticket its own floor, so a raise landing on the wrong ticket
                # shows. At most 8: apply treats 9 as "no raise asked" (severities are
                # 1-3 in use).
                sev = rng.randint(min(k + 1, 8), 8)
                lowest[t] = min(lowest[t], sev)
                reopens[t] += 1
                effects.append(Reopen(t, NOW, "concurrency test", "worker"))
                effects.append(SetSeverity(t, sev, 0, "concurrency test", "worker"))
            with transaction(sessions) as s:
                apply(s, effects, ctx)
        engine.dispose()
        results.put({"lowest": lowest, "reopens": dict(reopens)})
    except BaseException:
        results.put({"error": traceback.format_exc()})
        raise


def ingest_batches(url: str, mailbox: str, sender: str, batches: int, per_batch: int,
                   limit: int, delay: float, locks: bool, barrier: Any, results: Any) -> None:
    """A daemon's commits: ``batches`` batches of new mail from one sender through
    ``Ingestor.commit``. ``delay`` holds each transaction open between reading the facts
    and writing (a slow disk, a busy CPU), which makes the race window wide;
    ``locks=False`` turns off the PostgreSQL locks of store.facts, to show they matter."""
    try:
        from mailflow import config as config_mod
        from mailflow.classify import load_rules
        from mailflow.ingest import Ingestor
        from mailflow.prepare import Fetched, prepare_batch
        from mailflow.store import facts as store_facts
        from mailflow.store.db import make_engine, session_factory
        from tests.mails import mail

        if not locks:
            store_facts._pg = lambda _s: False  # type: ignore[assignment]
        if delay:
            gather = store_facts.gather

            def slow_gather(*args: Any, **kwargs: Any) -> Any:
                facts = gather(*args, **kwargs)
                time.sleep(delay)
                return facts

            store_facts.gather = slow_gather  # type: ignore[assignment]
        settings = config_mod.validate(
            {"database": url, "support_address": SUPPORT, "rules_dir": RULES,
             "acknowledgment": {"max_per_sender_per_hour": limit}}, base_dir=Path(RULES))
        engine = make_engine(url)
        ingestor = Ingestor(settings, session_factory(engine))
        rules = load_rules(settings.rules_path)
        outcomes: Counter[str] = Counter()
        barrier.wait(timeout=60)
        uid = 0
        for b in range(batches):
            fetched = []
            for i in range(per_batch):
                uid += 1
                raw = mail(sender=f"Looping Robot <{sender}>", subject=f"{mailbox} {b}.{i}",
                           message_id=f"<{mailbox}.{b}.{i}@loop.test>")
                fetched.append(Fetched(uid, raw, NOW))
            prepared = prepare_batch(fetched, rules, NOW, settings.tz, ingestor.own)
            outcomes.update(ingestor.commit(mailbox, 1, prepared, NOW).outcomes)
        engine.dispose()
        results.put({"outcomes": dict(outcomes)})
    except BaseException:
        results.put({"error": traceback.format_exc()})
        raise


def apply_crossed(url: str, first: int, second: int, rounds: int, barrier: Any,
                  results: Any) -> None:
    """Rounds that reopen ``first`` and raise ``second`` in one apply: run with the two
    swapped in the other process, the tickets' rows are locked in opposite orders
    unless apply (or its caller) locks them in a fixed order. Reports deadlocks."""
    try:
        from sqlalchemy import exc as sa_exc

        from mailflow.store.db import make_engine, session_factory, transaction
        from mailflow.tickets.apply import ApplyContext, apply
        from mailflow.tickets.effects import Reopen, SetSeverity

        engine = make_engine(url)
        sessions = session_factory(engine)
        ctx = ApplyContext(NOW, SUPPORT, "example.test", "SUP")
        deadlocks = 0
        barrier.wait(timeout=60)
        for _ in range(rounds):
            try:
                with transaction(sessions) as s:
                    apply(s, [Reopen(first, NOW, "crossed", "worker"),
                              SetSeverity(second, 5, 0, "crossed", "worker")], ctx)
            except sa_exc.OperationalError as exc:
                if "deadlock" not in str(exc):
                    raise
                deadlocks += 1
                break  # one is proof enough; PostgreSQL takes a second to detect each
        engine.dispose()
        results.put({"deadlocks": deadlocks})
    except BaseException:
        results.put({"error": traceback.format_exc()})
        raise
