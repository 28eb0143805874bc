"""Is mailflow doing its job? The verdict for ``/healthz``, ``mailflow status`` and alerts.

The verdict is a pure function of the daemon's liveness views (:mod:`mailflow.liveness`),
the outbox as the database sees it, ``now`` and ``alerts.after``: a mailbox or the
sender that has failed for at least that long is *down*, and anything down makes the
answer a 503. A blip shorter than ``alerts.after`` (a reconnect) is not reported.
The database read (:func:`outbox_facts`) and the HTTP listener (:class:`HealthServer`)
are the I/O at the edges.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.liveness import PartView
from mailflow.store.models import OutboxRow

log = logging.getLogger(__name__)

# Said in /healthz and the log whenever the sender is down: the alert is queued like
# any other mail and leaves when SMTP is back, not before.
SMTP_DOWN_NOTE = ("SMTP is down: alert mail waits in the outbox with the rest and goes out "
                  "when the server is back; watch /healthz or the log meanwhile")


@dataclass(frozen=True)
class OutboxFacts:
    """The outbox as the database sees it (the same for every process on it)."""

    depth: dict[str, int] = field(default_factory=dict)  # pending, sending, failed
    oldest_due: datetime | None = None  # the oldest pending row already due
    last_digest: datetime | None = None  # last digest row sent


@dataclass(frozen=True)
class Verdict:
    ok: bool
    problems: list[str]
    body: dict[str, Any]

    @property
    def status(self) -> int:
        return 200 if self.ok else 503


def is_down(view: PartView, now: datetime, after: timedelta) -> bool:
    """Failing without a success for at least ``after`` (a mailbox owned elsewhere is
    not ours to judge)."""
    return view.owned and view.failing_since is not None and now - view.failing_since >= after


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="seconds")


def _part(v: PartView, now: datetime, after: timedelta) -> dict[str, Any]:
    return {"name": v.name, "owned": v.owned, "connected": v.connected,
            "last_success": _iso(v.last_success), "last_error": v.last_error,
            "last_error_at": _iso(v.last_error_at), "failing_since": _iso(v.failing_since),
            "down": is_down(v, now, after), "restarts": v.restarts}


def verdict(views: list[PartView], outbox: OutboxFacts | None, now: datetime,
            after: timedelta) -> Verdict:
    """Health from what the daemon lived through; ``outbox`` None: the database did not
    answer."""
    problems = []
    mailboxes = [v for v in views if v.name != "sender"]
    sender = next((v for v in views if v.name == "sender"), None)
    for v in mailboxes:
        if is_down(v, now, after):
            problems.append(f"mailbox {v.name}: failing since {_iso(v.failing_since)}: "
                            f"{v.last_error}")
    notes = []
    if sender is not None and is_down(sender, now, after):
        problems.append(f"sender: cannot deliver since {_iso(sender.failing_since)}: "
                        f"{sender.last_error}")
        notes.append(SMTP_DOWN_NOTE)
    if outbox is None:
        problems.append("database: not answering")
    body: dict[str, Any] = {
        "status": "ok" if not problems else "failing",
        "problems": problems,
        "notes": notes,
        "mailboxes": [_part(v, now, after) for v in mailboxes],
        "sender": _part(sender, now, after) if sender else None,
    }
    if outbox is not None:
        body["outbox"] = {
            "backlog": outbox.depth.get("pending", 0) + outbox.depth.get("sending", 0),
            "failed": outbox.depth.get("failed", 0),
            "oldest_due": _iso(outbox.oldest_due),
            "oldest_due_age_seconds": None if outbox.oldest_due is None
            else max(0, int((now - outbox.oldest_due).total_seconds())),
        }
        body["last_digest"] = _iso(outbox.last_digest)
    return Verdict(not problems, problems, body)


def outbox_facts(sessions: sessionmaker[Session], now: datetime) -> OutboxFacts:
    """Depth by status, the oldest due row and the last digest sent: three indexed
    aggregates, cheap enough for every scrape."""
    with sessions() as s:
        depth = {str(k): int(n) for k, n in s.execute(
            select(OutboxRow.status, func.count()).where(
                OutboxRow.status.in_(["pending", "sending", "failed"]))
            .group_by(OutboxRow.status))}
        oldest = s.scalar(select(func.min(OutboxRow.next_attempt_at)).where(
            OutboxRow.status == "pending", OutboxRow.next_attempt_at <= now))
        digest = s.scalar(select(func.max(OutboxRow.sent_at)).where(
            OutboxRow.kind == "digest", OutboxRow.status == "sent"))
    return OutboxFacts(depth, _aware(oldest, now), _aware(digest, now))


def _aware(t: datetime | None, now: datetime) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored in UTC."""
    if t is not None and t.tzinfo is None and now.tzinfo is not None:
        return t.replace(tzinfo=now.tzinfo)
    return t


class HealthServer:
    """``/healthz`` (JSON, 200 or 503) and ``/metrics`` (Prometheus text) on one port,
    served from a thread of its own: a slow scrape never holds the event loop."""

    def __init__(self, listen: str, health: Callable[[], Verdict],
                 metrics: Callable[[], bytes]):
        host, _, port = listen.rpartition(":")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._get(self)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        self.health = health
        self.metrics = metrics
        self.server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)),
                                          Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="http",
                                       daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"  # a TCP server's host is text (bytes only for AF_UNIX)

    def start(self) -> None:
        self.thread.start()
        log.info("health and metrics on http://%s/healthz and /metrics", self.address)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _get(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                v = self.health()
                body, status, ctype = (json.dumps(v.body, indent=1).encode() + b"\n",
                                       v.status, "application/json")
            elif path == "/metrics":
                body, status, ctype = self.metrics(), 200, "text/plain; version=0.0.4"
            else:
                body, status, ctype = b"not found: try /healthz or /metrics\n", 404, \
                    "text/plain"
        except Exception as exc:
            log.exception("health endpoint failed")
            body, status, ctype = f"error: {type(exc).__name__}\n".encode(), 500, "text/plain"
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)
