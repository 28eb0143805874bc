"""The parse worker process: same results as inline, survives its own death, and the
pipelined watcher keeps UID order across batches against real Dovecot."""

from __future__ import annotations

import logging
import os
import signal
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from mailflow.classify import load_rules
from mailflow.imap import PROCESSED_KEYWORD
from mailflow.ingest import Fetched, prepare_batch
from mailflow.mailstack import MailStack
from mailflow.preparepool import PreparePool, resolve_processes
from mailflow.store.models import StoredMessage, Ticket
from tests.conftest import SUPPORT
from tests.mails import mail, reply_to

RULES = load_rules(Path(__file__).parents[2] / "rules")
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
OWN = frozenset({SUPPORT})


def _batch() -> list[Fetched]:
    first = mail(subject="Server down", body="production server down since 9")
    raws = [
        first,
        reply_to(first, "customer@example.test", "still down"),
        mail(subject="Invoice question", html="<p>Where is my <b>invoice</b>?</p>", body=None),
        mail(headers={"Auto-Submitted": "auto-replied"}, subject="Out of office"),
        b"this is not a mail at all",
    ]
    # A fixed-offset INTERNALDATE, as Dovecot reports them.
    when = datetime(2026, 3, 2, 13, tzinfo=timezone(timedelta(hours=1)))
    return [Fetched(i + 1, raw, when) for i, raw in enumerate(raws)]


def test_worker_results_equal_inline_results() -> None:
    batch = _batch()
    inline = prepare_batch(batch, RULES, NOW, UTC, OWN)
    pool = PreparePool(1, UTC, OWN)
    try:
        remote = pool.result(pool.submit(batch, RULES, NOW), batch, RULES, NOW)
    finally:
        pool.close()
    assert remote == inline  # raw bytes re-attached, classification and all
    assert remote[0].classification is not None and "outage" in remote[0].classification.matched
    assert remote[3].suppress is not None and "Auto-Submitted" in remote[3].suppress
    assert remote[4].msg is None and remote[4].error
    assert all(p.fetched.raw for p in remote)


def test_dead_worker_falls_back_inline_and_restarts(caplog: pytest.LogCaptureFixture) -> None:
    batch = _batch()
    pool = PreparePool(1, UTC, OWN)
    try:
        pool.start()
        assert pool._executor is not None
        (pid,) = pool._executor._processes  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)  # the OOM killer, say
        with caplog.at_level(logging.ERROR, logger="mailflow.preparepool"):
            fut = pool.submit(batch, RULES, NOW)
            got = pool.result(fut, batch, RULES, NOW)
        assert got == prepare_batch(batch, RULES, NOW, UTC, OWN)
        assert "parse worker failed" in caplog.text
        # The next batch goes to a fresh worker process again.
        again = pool.submit(batch, RULES, NOW)
        assert pool._executor is not None
        assert pool.result(again, batch, RULES, NOW) == got
        assert pid not in pool._executor._processes  # type: ignore[attr-defined]
    finally:
        pool.close()


def test_zero_processes_prepares_inline() -> None:
    pool = PreparePool(0, UTC, OWN)
    batch = _batch()
    assert pool.result(pool.submit(batch, RULES, NOW), batch, RULES, NOW) == prepare_batch(
        batch, RULES, NOW, UTC, OWN)
    assert pool._executor is None
    assert resolve_processes(0) == 0 and resolve_processes(3) == 3
    assert resolve_processes("auto") == (1 if (os.cpu_count() or 1) > 1 else 0)


@pytest.mark.parametrize("processes", [0, 1])
def test_pipelined_batches_thread_replies_across_batch_boundaries(
        stack: MailStack, sqlite_url: str, make_app, processes: int) -> None:
    # Batches of 7: every reply below lands in a later batch than its original, which
    # the worker prepares before the original's batch is committed.
    app = make_app(stack, sqlite_url, imap={"batch_size": 7},
                   ingest={"parse_processes": processes})
    originals = [mail(sender=f"c{i} <c{i}@example.test>", subject=f"Problem {i}")
                 for i in range(20)]
    replies = [reply_to(o, f"c{i}@example.test", f"more about {i}")
               for i, o in enumerate(originals)]
    stack.append(SUPPORT, originals + replies)
    w = app.watchers()[0]
    res = w.cycle()
    w.close()
    assert app.pool.processes == processes
    assert res.fetched == 40 and res.outcomes["new"] == 20 and res.outcomes["join"] == 20
    with app.sessions() as s:
        assert s.scalar(select(Ticket.id).order_by(Ticket.id.desc()).limit(1)) == 20
        rows = s.execute(select(StoredMessage.uid, StoredMessage.ticket_id)
                         .order_by(StoredMessage.uid)).all()
    # UID order is ticket order for the originals, and each reply joined its original.
    assert [t for _, t in rows] == list(range(1, 21)) * 2
    with stack.imap(SUPPORT) as c:
        c.select_folder("INBOX")
        assert len(c.search(["KEYWORD", PROCESSED_KEYWORD.decode()])) == 40


def test_workers_that_keep_dying_are_given_up_once(caplog: pytest.LogCaptureFixture) -> None:
    batch = _batch()
    expected = prepare_batch(batch, RULES, NOW, UTC, OWN)
    pool = PreparePool(1, UTC, OWN)
    try:
        with caplog.at_level(logging.ERROR, logger="mailflow.preparepool"):
            for _ in range(4):
                pool.start()
                if pool._executor is not None:
                    for pid in list(pool._executor._processes):  # type: ignore[attr-defined]
                        os.kill(pid, signal.SIGKILL)
                fut = pool.submit(batch, RULES, NOW)
                assert pool.result(fut, batch, RULES, NOW) == expected
        assert pool.processes == 0 and pool._executor is None
        assert caplog.text.count("parsing in the watcher thread from now on") == 1
    finally:
        pool.close()


def test_after_close_batches_are_prepared_inline_and_no_worker_starts() -> None:
    batch = _batch()
    pool = PreparePool(1, UTC, OWN)
    pool.start()
    pool.close()
    fut = pool.submit(batch, RULES, NOW)  # a watcher finishing its batch during shutdown
    assert pool.result(fut, batch, RULES, NOW) == prepare_batch(batch, RULES, NOW, UTC, OWN)
    assert pool._executor is None and pool.failures == 0
