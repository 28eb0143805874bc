"""Mail the administrator when intake or delivery stops, daily while it lasts, and when
it recovers.

The silent failure administrators report most: an expired OAuth token stops intake and
nobody notices for days. A mailbox or the sender that has been down for
``alerts.after`` (:func:`mailflow.health.is_down`) is reported to ``alerts.admin``
through the outbox like any other mail: a ``notice`` row queued by the one writer
(:func:`mailflow.tickets.apply.apply`), without a ticket. Its dedupe key
``alert:<part>:<day>:<state>`` makes it once a day per state, also with several
daemons on one database. When the SMTP server itself is down the alert waits in the
outbox with everything else; health and the log say so.

:func:`due_alerts` decides (pure); :class:`Alerter` queues.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailflow.accounts import apply_context
from mailflow.config import Settings
from mailflow.health import SMTP_DOWN_NOTE, is_down
from mailflow.liveness import PartView
from mailflow.store.models import OutboxRow
from mailflow.tickets import OutboxKind
from mailflow.tickets.apply import apply
from mailflow.tickets.effects import MailRequest, QueueMail

log = logging.getLogger(__name__)

TEMPLATE = "admin-alert"
DOWN, RECOVERED = "down", "recovered"


@dataclass(frozen=True)
class Alert:
    part: str
    state: str  # DOWN or RECOVERED
    key: str
    view: PartView


def alert_key(part: str, day: date, state: str) -> str:
    return f"alert:{part}:{day.isoformat()}:{state}"


def due_alerts(views: list[PartView], now: datetime, today: date, after: timedelta,
               alerted: set[str], done: set[str]) -> list[Alert]:
    """What to queue now. ``alerted``: parts reported down and not yet recovered;
    ``done``: keys queued already (in memory, so the database is asked once)."""
    out = []
    for v in views:
        if is_down(v, now, after):
            key = alert_key(v.name, today, DOWN)
            if key not in done:
                out.append(Alert(v.name, DOWN, key, v))
        elif v.name in alerted and v.failing_since is None:
            out.append(Alert(v.name, RECOVERED, alert_key(v.name, today, RECOVERED), v))
    return out


def alert_context(a: Alert, now: datetime, host: str) -> dict[str, Any]:
    v = a.view
    sender = v.name == "sender"
    return {
        "alert": {
            "state": a.state,
            "part": "the SMTP sender" if sender else f"mailbox {v.name}",
            "kind": "sender" if sender else "mailbox",
            "since": None if v.failing_since is None else v.failing_since.isoformat(
                timespec="seconds"),
            "last_error": v.last_error or "",
            "last_success": None if v.last_success is None else v.last_success.isoformat(
                timespec="seconds"),
            "host": host,
            "at": now.isoformat(timespec="seconds"),
            "note": SMTP_DOWN_NOTE if sender and a.state == DOWN else "",
        },
    }


@dataclass
class Alerter:
    """Queues what :func:`due_alerts` says, remembering what it queued."""

    settings: Settings
    sessions: sessionmaker[Session]
    alerted: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    host: str = field(default_factory=socket.gethostname)

    def check(self, views: list[PartView], now: datetime) -> list[Alert]:
        st = self.settings.alerts
        today = now.astimezone(self.settings.tz).date()
        alerts = due_alerts(views, now, today, st.after, self.alerted, self.done)
        for a in alerts:
            what = "the SMTP sender" if a.part == "sender" else f"mailbox {a.part}"
            extra = {} if a.part == "sender" else {"mailbox": a.part}
            if a.state == DOWN:
                log.error("ALERT: %s is down since %s: %s", what, a.view.failing_since,
                          a.view.last_error, extra=extra)
                if a.part == "sender":
                    log.error("ALERT: %s", SMTP_DOWN_NOTE)
                self.alerted.add(a.part)
            else:
                log.warning("ALERT cleared: %s works again", what, extra=extra)
                self.alerted.discard(a.part)
            if st.admin:
                self._queue(a, now)
            self.done.add(a.key)
        return alerts

    def _queue(self, a: Alert, now: datetime) -> None:
        st = self.settings
        with self.sessions() as s:
            if s.scalar(select(OutboxRow.id).where(OutboxRow.dedupe_key == a.key)):
                return  # another daemon (or this one before a restart) queued it
        mail = QueueMail(MailRequest(
            kind=OutboxKind.NOTICE, template=TEMPLATE, recipient=str(st.alerts.admin),
            ticket=None, context=alert_context(a, now, self.host),
            auto_submitted="auto-generated", dedupe_key=a.key),
            summary=f"alert {a.state}: {a.part}")
        ctx = apply_context(st, now)
        try:
            with self.sessions.begin() as s:
                apply(s, [mail], ctx)
            log.info("alert %s queued for the administrator", a.key)
        except IntegrityError:
            log.info("alert %s was queued already", a.key)
