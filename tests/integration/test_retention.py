"""Retention on both databases: raw bytes of long-closed tickets go, everything else stays."""

from __future__ import annotations

import io
import json
import mailbox
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select, update
from sqlalchemy.orm import undefer

from mailflow import export as ex
from mailflow.cli import main
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.retention import RAW_PURGED, purge_raw
from mailflow.store.models import (
    Attachment,
    OutboxRow,
    StoredMessage,
    Ticket,
    TicketEvent,
)
from tests.conftest import CUSTOMER, SUPPORT
from tests.integration.test_export import write_config
from tests.mails import mail, reply_to


def _close(app: Any, ticket_id: int, days_ago: float) -> None:
    when = datetime.now(UTC) - timedelta(days=days_ago)
    with app.sessions() as s, s.begin():
        s.execute(update(Ticket).where(Ticket.id == ticket_id)
                  .values(status="closed", resolved_at=when, closed_at=when))


def _three_tickets(stack: MailStack, app: Any) -> None:
    """SUP-1 closed 40 days ago, SUP-2 closed 5 days ago, SUP-3 open; all acknowledged."""
    stack.append(SUPPORT, [mail(subject=f"ticket {i}") for i in (1, 2, 3)])
    res = run_once(app)
    assert len(res.delivery.sent) == 3
    _close(app, 1, 40)
    _close(app, 2, 5)


def _raw(app: Any) -> dict[int, tuple[int, list[str]]]:
    with app.sessions() as s:
        rows = s.execute(select(StoredMessage.ticket_id, func.length(StoredMessage.raw),
                                StoredMessage.flags).order_by(StoredMessage.id)).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def _outbox_raw(app: Any) -> dict[int, bool]:
    with app.sessions() as s:
        rows = s.scalars(select(OutboxRow).options(undefer(OutboxRow.raw))).all()
    return {o.ticket_id: o.raw is not None for o in rows}


def _counts(app: Any) -> list[int]:
    with app.sessions() as s:
        return [s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Ticket, StoredMessage, TicketEvent, OutboxRow, Attachment)]


def test_purge_removes_raw_of_long_closed_tickets_only(stack: MailStack, db_url: str,
                                                       make_app) -> None:
    app = make_app(stack, db_url)
    _three_tickets(stack, app)
    before, counts = _raw(app), _counts(app)
    now = datetime.now(UTC)

    dry = purge_raw(app.sessions, now, 30, dry_run=True)
    assert (dry.tickets, dry.messages, dry.outbox) == (1, 1, 1) and dry.bytes > 0
    assert _raw(app) == before and all(_outbox_raw(app).values())

    report = purge_raw(app.sessions, now, 30)
    assert (report.tickets, report.messages, report.outbox) == (1, 1, 1)
    assert report.bytes == dry.bytes
    after = _raw(app)
    assert after[1][0] == 0 and RAW_PURGED in after[1][1]
    assert after[2] == before[2] and after[3] == before[3]
    assert _outbox_raw(app) == {1: False, 2: True, 3: True}
    assert _counts(app) == counts  # rows, events and outbox rows all stay
    with app.sessions() as s:
        m = s.scalars(select(StoredMessage).where(StoredMessage.ticket_id == 1)).one()
        assert m.subject == "ticket 1" and m.message_id and "printer" in m.new_text

    again = purge_raw(app.sessions, now, 30)  # idempotent: nothing left to remove
    assert (again.tickets, again.messages, again.outbox) == (1, 0, 0)
    assert purge_raw(app.sessions, now, 0).messages == 1  # SUP-2 too, SUP-3 never


def test_reply_to_purged_ticket_still_threads(stack: MailStack, db_url: str,
                                              make_app) -> None:
    """Message-IDs and reply tokens survive, so a late reply still finds its ticket."""
    app = make_app(stack, db_url)
    _three_tickets(stack, app)
    purge_raw(app.sessions, datetime.now(UTC), 30)
    [ack1] = [raw for subject, raw in _acks(stack) if "SUP-1" in subject]
    stack.append(SUPPORT, [reply_to(ack1, CUSTOMER, "it is broken again")])
    res = run_once(app)
    assert res.fetched == 1
    with app.sessions() as s:
        t = s.scalars(select(Ticket).order_by(Ticket.id.desc()).limit(1)).one()
    # Closed longer than reopen_window (30d): a new ticket linked to the purged one.
    assert t.id == 4 and t.linked_ticket_id == 1


def _acks(stack: MailStack) -> list[tuple[str, bytes]]:
    from email import message_from_bytes
    from email.policy import default

    return [(str(message_from_bytes(raw, policy=default)["Subject"]), raw)
            for raw in stack.wait_for(CUSTOMER, 3)]


def test_export_after_purge_says_so(stack: MailStack, db_url: str, make_app,
                                    tmp_path: Path) -> None:
    app = make_app(stack, db_url)
    _three_tickets(stack, app)
    purge_raw(app.sessions, datetime.now(UTC), 30)
    out = io.StringIO()
    report = ex.export_jsonl(app.sessions, out, ex.EVERYTHING, "SUP")
    first = json.loads(out.getvalue().splitlines()[0])
    assert report.purged == 1 and first["messages"][0]["raw_base64"] == ""
    assert first["sent"][0]["raw_base64"] is None
    ex.export_mbox(app.sessions, tmp_path / "mbox", ex.EVERYTHING, "SUP")
    box = mailbox.mbox(str(tmp_path / "mbox" / "SUP-1.mbox"))
    [rebuilt] = list(box)  # the sent acknowledgment has no bytes any more
    box.close()
    assert rebuilt["Subject"] == "ticket 1" and rebuilt["X-Mailflow-Raw-Purged"]
    assert "printer is broken" in rebuilt.get_payload()


def test_cli_retention_purge(stack: MailStack, db_url: str, make_app,
                             tmp_path: Path) -> None:
    app = make_app(stack, db_url)
    _three_tickets(stack, app)
    cfg = write_config(tmp_path, db_url)
    runner = CliRunner()
    res = runner.invoke(main, ["--config", str(cfg), "retention", "purge",
                               "--raw-older-than", "30", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would remove the raw bytes of 1 message(s) and 1 sent mail" in res.output
    assert _raw(app)[1][0] > 0
    res = runner.invoke(main, ["--config", str(cfg), "retention", "purge",
                               "--raw-older-than", "30"])
    assert res.exit_code == 0 and "removed the raw bytes of 1 message(s)" in res.output
    assert _raw(app)[1][0] == 0
    res = runner.invoke(main, ["--config", str(cfg), "retention", "purge",
                               "--raw-older-than", "-1"])
    assert res.exit_code == 2


def test_the_daemon_purges_by_the_retention_setting(stack: MailStack, sqlite_url: str,
                                                    make_app) -> None:
    """retention.raw_days: the daemon's scheduler pass drops raw bytes of long-closed
    tickets (once a day), keeping the rows."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select, update

    from mailflow.clock import FrozenClock
    from mailflow.daemon import retention_pass, run_once
    from mailflow.store.models import StoredMessage, Ticket

    clock = FrozenClock(datetime.now(UTC))
    app = make_app(stack, sqlite_url, clock, retention={"raw_days": 30})
    stack.append(SUPPORT, [mail(subject="old and closed")])
    run_once(app)
    with app.sessions.begin() as s:
        s.execute(update(Ticket).values(status="closed",
                                        closed_at=clock.now() - timedelta(days=40)))
    clock.set(clock.now() + timedelta(days=2))  # a day later than the last pass
    assert retention_pass(app) == 1
    with app.sessions() as s:
        [m] = s.scalars(select(StoredMessage)).all()
        assert m.raw == b"" and "raw-purged" in m.flags and m.ticket_id == 1
    assert retention_pass(app) == 0  # not again within the day
