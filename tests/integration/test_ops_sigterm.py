"""SIGTERM in the middle of a backlog: the daemon finishes the batch in hand, exits 0
within seconds, and a restart picks up the rest: every message in exactly one ticket,
every acknowledgment once (counted in the customers' mailbox by Message-ID)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from mailflow.mailstack import MailStack
from tests.conftest import CUSTOMER
from tests.integration.opsproc import (
    Daemon,
    acks_once,
    backlog,
    count,
    stored_once,
    upgrade,
    wait_until,
    write_config,
)

N = 2000


def test_sigterm_mid_backlog_then_restart_loses_and_repeats_nothing(
        stack: MailStack, db_url: str, tmp_path: Path) -> None:
    # 700 senders: at most 3 mails each, the acknowledgment limit per sender and hour.
    cfg = write_config(stack, db_url, tmp_path, imap_extra="  batch_size: 100\n")
    upgrade(cfg)
    ids = backlog(stack, N, senders=700, tag="term")
    d = Daemon(cfg, tmp_path / "first.log")
    try:
        # SIGTERM as soon as the first batch is committed: the rest is still to come.
        wait_until(lambda: count(db_url, "SELECT max(last_uid) FROM mailbox_checkpoints"),
                   60, step=0.005, what="the first committed batch")
        d.signal(signal.SIGTERM)
        started = time.monotonic()
        code = d.proc.wait(timeout=60)
        took = time.monotonic() - started
    finally:
        d.stop()
    assert code == 0, d.text()[-2000:]
    partial = count(db_url, "SELECT count(*) FROM messages WHERE direction = 'in'")
    print(f"stopped after {partial} of {N} messages, {took:.1f}s after SIGTERM")
    assert partial > 0 and "stopped" in d.text()
    # What was committed is all there; a batch is never half-written.
    assert partial % 100 == 0 or partial == N

    again = Daemon(cfg, tmp_path / "second.log")
    try:
        wait_until(lambda: count(db_url, "SELECT count(*) FROM messages "
                                         "WHERE direction = 'in'") >= N,
                   120, what="the rest of the backlog")
        wait_until(lambda: count(db_url, "SELECT count(*) FROM outbox "
                                         "WHERE status = 'sent'") >= N,
                   180, what="every acknowledgment sent")
        assert len(stack.wait_for(CUSTOMER, N, timeout=60)) >= N
    finally:
        assert again.stop() == 0
    tickets = stored_once(db_url, ids)
    assert len(set(tickets.values())) == N  # each its own ticket
    assert count(db_url, "SELECT count(*) FROM outbox") == N
    acks_once(stack, ids)
