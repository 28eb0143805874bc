"""Several SMTP connections at once against the real servers: every acknowledgment is
delivered exactly once, counted in the recipient's Dovecot INBOX."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import select

from mailflow.clock import FrozenClock
from mailflow.daemon import run_once
from mailflow.mailstack import PASSWORD, MailStack
from mailflow.smtp import DeliveryError, SmtpTransport
from mailflow.store.db import make_engine
from mailflow.store.models import OutboxRow
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail

RULES = Path(__file__).parents[2] / "rules"
MANY = {"acknowledgment": {"max_per_sender_per_hour": 1000}}
# Longer than a connection ever holds a claimed batch, even on a loaded machine.
LEASE = 8


def _queue(stack: MailStack, n: int) -> None:
    stack.append(SUPPORT, [mail(sender=f"Customer {i} <{CUSTOMER}>", subject=f"Request {i}")
                           for i in range(n)])


def _copies(stack: MailStack) -> Counter[str]:
    """How often each Message-ID arrived in the customer's INBOX."""
    seen: Counter[str] = Counter()
    for raw in stack.messages(CUSTOMER):
        head = raw.split(b"\r\n\r\n", 1)[0]
        mid = next(line for line in head.split(b"\r\n")
                   if line.lower().startswith(b"message-id:"))
        seen[mid.split(b"<", 1)[1].split(b">", 1)[0].decode()] += 1
    return seen


def _rows(url: str) -> list[OutboxRow]:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return list(c.execute(select(OutboxRow.__table__)).all())
    finally:
        engine.dispose()


class _Counting(SmtpTransport):
    """The real transport, numbered, optionally misbehaving on one connection."""

    opened: ClassVar[list[_Counting]] = []

    def __init__(self, settings: Any, trouble: str | None = None):
        super().__init__(settings)
        self.trouble = trouble
        self.sent = 0
        _Counting.opened.append(self)

    async def start(self, mail_from: str, recipient: str, raw: bytes) -> None:
        if self.trouble == "drop" and self.sent == 2:
            assert self.client is not None
            self.client.close()  # the connection goes away in the middle of a batch
        if self.trouble == "4xx":
            # A server throttling this one connection answers every mail with a 4xx.
            raise DeliveryError("451 4.7.0 too many messages, slow down", permanent=False)
        await super().start(mail_from, recipient, raw)

    async def finish(self, recipient: str, raw: bytes) -> str:
        answer = await super().finish(recipient, raw)
        self.sent += 1
        return answer


def _transport(app: Any, trouble: str | None) -> None:
    """The first connection opened gets the trouble; the others are healthy."""
    _Counting.opened = []

    def factory() -> SmtpTransport:
        return _Counting(app.settings.smtp, trouble if not _Counting.opened else None)

    app.sender.transport = factory


def test_several_connections_send_every_row_exactly_once(stack: MailStack, db_url: str,
                                                         make_app: Any) -> None:
    app = make_app(stack, db_url, FrozenClock(), smtp={"connections": 4}, **MANY)
    _transport(app, None)
    _queue(stack, 60)
    res = run_once(app)
    assert res.outcomes["new"] == 60
    assert len(res.delivery.sent) == 60 and len(set(res.delivery.sent)) == 60
    copies = _copies(stack)
    rows = _rows(db_url)
    assert sorted(copies) == sorted(r.message_id for r in rows)
    assert set(copies.values()) == {1}
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    # The work really was spread over several connections.
    assert sum(1 for t in _Counting.opened if t.sent) >= 2


def test_connection_dropped_mid_batch_others_take_its_rows(stack: MailStack, db_url: str,
                                                           make_app: Any) -> None:
    clock = FrozenClock()
    app = make_app(stack, db_url, clock, smtp={"connections": 2}, **MANY)
    _transport(app, "drop")
    _queue(stack, 50)
    res = run_once(app)
    # Only the mail in flight when the connection dropped waits; the rest of that
    # connection's batch went back to the queue and out over the other connections.
    assert len(res.delivery.retrying) == 1 and len(res.delivery.sent) == 49
    [waiting] = [r for r in _rows(db_url) if r.status != "sent"]
    assert waiting.status == "pending" and "connection" in waiting.last_error.lower()
    clock.advance(timedelta(minutes=5))
    assert asyncio.run(app.sender.deliver_due()).sent == [waiting.id]
    copies = _copies(stack)
    assert len(copies) == 50 and set(copies.values()) == {1}


def test_4xx_on_one_connection_backs_off_that_connection_only(stack: MailStack, db_url: str,
                                                              make_app: Any) -> None:
    clock = FrozenClock()
    app = make_app(stack, db_url, clock, smtp={"connections": 2}, **MANY)
    _transport(app, "4xx")
    _queue(stack, 50)
    res = run_once(app)
    # The throttled connection tried three mails, then stopped for the pass; everything
    # else went out over the healthy one.
    assert len(res.delivery.retrying) == 3 and len(res.delivery.sent) == 47
    waiting = [r for r in _rows(db_url) if r.status != "sent"]
    assert {(r.status, r.attempts) for r in waiting} == {("pending", 1)}
    assert all(r.last_error.startswith("451") for r in waiting)
    assert all(r.next_attempt_at > clock.now() for r in waiting)
    clock.advance(timedelta(hours=1))
    _transport(app, None)
    assert sorted(asyncio.run(app.sender.deliver_due()).sent) == sorted(r.id for r in waiting)
    copies = _copies(stack)
    assert len(copies) == 50 and set(copies.values()) == {1}


def test_sigkill_during_parallel_send_then_restart(stack: MailStack, sqlite_url: str,
                                                   tmp_path: Path) -> None:
    """Kill -9 while three connections send, restart: every acknowledgment arrives, and
    only the mails in flight at the kill (at most one per connection) arrive twice. The
    killed process is a `run --once` (its render worker starts while it ingests), and
    none of its worker processes outlives it."""
    connections = 3
    cfg = tmp_path / "mailflow.yaml"
    imap, smtp = stack.settings_yaml(sqlite_url, f"rules_dir: {RULES}\n"
                                     "acknowledgment: {max_per_sender_per_hour: 1000}\n"
                                     f"outbox: {{lease: {LEASE}s}}\n").split("smtp:\n")
    if "backlog:" not in imap:  # the seeded mail is new mail, to be acknowledged
        imap = imap.replace("security: none\n", "security: none\n  backlog: acknowledge\n")
    cfg.write_text(imap + "smtp:\n" + smtp.replace("security: none\n", "security: none\n"
                                               f"  connections: {connections}\n"))
    env = dict(os.environ, MAILFLOW_IMAP_PASSWORD=PASSWORD)
    exe = [sys.executable, "-m", "mailflow", "--config", str(cfg)]
    subprocess.run([*exe, "db", "upgrade"], check=True, env=env, capture_output=True)
    n = 200
    _queue(stack, n)
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([*exe, "run", "--once"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while _delivered(stack) < 20:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.02)
        finally:
            helpers = _descendants(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            _reap(helpers)
    at_kill = _delivered(stack)
    assert at_kill < n, "everything was sent before the kill: nothing was tested"
    time.sleep(LEASE + 0.5)  # the killed sender's leases run out
    done = subprocess.run([*exe, "run", "--once"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    copies = _copies(stack)
    rows = _rows(sqlite_url)
    assert len(rows) == n and {r.status for r in rows} == {"sent"}
    assert sorted(copies) == sorted(r.message_id for r in rows)
    twice = sum(c - 1 for c in copies.values())
    assert max(copies.values()) <= 2 and twice <= connections, (at_kill, twice)


def _delivered(stack: MailStack) -> int:
    with stack.imap(CUSTOMER) as c:
        return int(c.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"])


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for c in map(int, children):
                if c not in found:
                    found.add(c)
                    todo.append(c)
    return found


def _reap(pids: set[int]) -> None:
    """The killed process's workers end on their own once it is gone (mailflow.lifeline);
    any left after 10 s are killed here and fail the test."""
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {p for p in pids if _alive(p)}
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "worker processes outlived the killed mailflow"


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
