"""What ``mailflow status`` reports: the database's view, and the daemon's own where its
listener answers.

The database knows what every process did (each mailbox's last commit, the outbox,
the last digest) but not what is happening now; a daemon's ``/healthz`` knows whether
its mailboxes are connected and what failed last. The command shows both, and says
which one it could not reach.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.health import OutboxFacts, outbox_facts
from mailflow.store.models import MailboxCheckpoint


@dataclass(frozen=True)
class Checkpoint:
    mailbox: str
    last_commit: datetime
    last_uid: int


@dataclass(frozen=True)
class StatusReport:
    checkpoints: list[Checkpoint]
    outbox: OutboxFacts
    daemon: dict[str, Any] | None  # /healthz's body, None: no listener configured
    daemon_problem: str | None  # why the listener could not be asked
    daemon_status: int | None = None


def checkpoints(sessions: sessionmaker[Session], now: datetime) -> list[Checkpoint]:
    with sessions() as s:
        rows = s.execute(select(MailboxCheckpoint.mailbox, MailboxCheckpoint.updated_at,
                                MailboxCheckpoint.last_uid)
                         .order_by(MailboxCheckpoint.mailbox)).all()
    return [Checkpoint(m, at if at.tzinfo or now.tzinfo is None else at.replace(
        tzinfo=now.tzinfo), int(uid)) for m, at, uid in rows]


def ask_daemon(listen: str, timeout: float = 3.0) -> tuple[int | None, dict[str, Any] | None,
                                                           str | None]:
    """GET /healthz of a running daemon: (HTTP status, body, problem)."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read()), None
    except urllib.error.HTTPError as exc:  # 503 carries the same body
        try:
            return exc.code, json.loads(exc.read()), None
        except ValueError:
            return exc.code, None, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return None, None, f"{url}: not reachable ({exc}); is `mailflow run` running here?"


def gather(sessions: sessionmaker[Session], listen: str | None, now: datetime) -> StatusReport:
    status, body, problem = (None, None, None) if not listen else ask_daemon(listen)
    return StatusReport(checkpoints(sessions, now), outbox_facts(sessions, now), body,
                        problem, status)
