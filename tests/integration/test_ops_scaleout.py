"""Two ``mailflow run`` on one PostgreSQL database and one mailbox (issue 15, scale-out).

One owns the mailbox (an advisory lock on its own connection), the other stands by;
both send, claiming outbox rows with SKIP LOCKED. 2,000 mails: each in exactly one
ticket, each acknowledgment once. Then the owner is SIGKILLed: its session ends, the
lock with it, and the standby takes the mailbox over within its retry period and
handles new mail.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailflow.mailboxlock import RETRY_SECONDS
from mailflow.mailstack import MailStack, free_port
from tests.conftest import CUSTOMER, SUPPORT
from tests.integration.opsproc import (
    Daemon,
    acks_once,
    backlog,
    count,
    healthz,
    stored_once,
    upgrade,
    wait_until,
    write_config,
)

N = 2000
BOX = f"{SUPPORT}/INBOX"


def _owned(port: int) -> bool | None:
    status, body = healthz(port)
    boxes = body.get("mailboxes") or []
    return boxes[0]["owned"] if status and boxes else None


def test_two_daemons_share_one_mailbox_and_the_standby_takes_over(
        stack: MailStack, db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("scale-out is PostgreSQL's; on SQLite the run lock refuses a second "
                    "process (tests/integration/test_run_lock.py)")
    ports = [free_port(), free_port()]
    cfgs = [write_config(stack, db_url, tmp_path,
                         f"metrics:\n  listen: 127.0.0.1:{p}\noutbox:\n  lease: 20s\n",
                         imap_extra="  batch_size: 100\n", name=f"worker{i}.yaml")
            for i, p in enumerate(ports)]
    upgrade(cfgs[0])
    first = Daemon(cfgs[0], tmp_path / "first.log")
    second: Daemon | None = None
    try:
        wait_until(lambda: _owned(ports[0]) is True, 60, what="the first daemon to own")
        second = Daemon(cfgs[1], tmp_path / "second.log")
        wait_until(lambda: _owned(ports[1]) is False, 60, what="the second to stand by")

        ids = backlog(stack, N, senders=700, tag="pair")
        wait_until(lambda: count(db_url, "SELECT count(*) FROM outbox "
                                         "WHERE status = 'sent'") >= N,
                   240, what="every acknowledgment sent")
        assert len(stack.wait_for(CUSTOMER, N, timeout=60)) >= N
        tickets = stored_once(db_url, ids)
        assert len(set(tickets.values())) == N
        assert count(db_url, "SELECT count(*) FROM outbox") == N
        acks_once(stack, ids)
        # Both sent: the outbox is shared, each row claimed by one of them.
        assert "sent outbox" in first.text() and "sent outbox" in second.text()
        assert "standing by" in second.text() and "owns the mailbox" not in second.text()

        # The owner dies without a word: its session, and the lock, end with it.
        first.kill()
        killed = time.monotonic()
        wait_until(lambda: _owned(ports[1]) is True, 4 * RETRY_SECONDS + 10,
                   step=0.1, what="the standby to take the mailbox over")
        print(f"taken over {time.monotonic() - killed:.1f}s after SIGKILL")
        more = backlog(stack, 10, senders=10, tag="after", first=1000)
        wait_until(lambda: count(db_url, "SELECT count(*) FROM outbox "
                                         "WHERE status = 'sent'") >= N + 10,
                   60, what="the new mail acknowledged by the survivor")
        stored_once(db_url, ids + more)
        acks_once(stack, ids + more)
    finally:
        if first.proc.poll() is None:
            first.stop()
        if second is not None:
            assert second.stop() == 0
