"""``mailflow tickets refer`` on SQLite and PostgreSQL: the referral a person makes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from sqlalchemy import select

from mailflow.cli import main
from mailflow.prepare import Fetched
from mailflow.store.models import OutboxRow, Referral, Ticket, TicketEvent
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
RULES = Path(__file__).resolve().parent.parent.parent / "rules"


def test_a_person_refers_a_ticket_and_replies_thread_by_the_referral_token(
        db_url: str, make_app: Any, tmp_path: Path) -> None:
    app = make_app(None, db_url)
    app.ingestor.ingest("INBOX", 1, [Fetched(1, mail(subject="Printer jams"), NOW)],
                        app.rules.current, NOW)
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({"database": db_url, "support_address": SUPPORT,
                                   "rules_dir": str(RULES)}))

    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, ["--config", str(cfg), *args])

    bad = cli("tickets", "refer", "SUP-1", "tier9", "--reason", "x")
    assert bad.exit_code == 1 and "unknown group 'tier9'" in bad.output
    ok = cli("tickets", "refer", "SUP-1", "tier2", "--reason", "needs a technician")
    assert ok.exit_code == 0, ok.output
    assert "SUP-1 referred to tier2" in ok.output
    again = cli("tickets", "refer", "SUP-1", "tier2", "--reason", "again")
    assert again.exit_code == 1 and "already with tier2" in again.output
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None and (t.status, t.owner_group) == ("referred", "tier2")
        [ref] = s.scalars(select(Referral)).all()
        rows = {r.template: r for r in s.scalars(select(OutboxRow))}
        events = [e.data.get("what") or e.kind for e in s.scalars(
            select(TicketEvent).where(TicketEvent.ticket_id == 1).order_by(TicketEvent.id))]
    assert "referred" in events and "owner-changed" in events
    referral = rows["referral"]
    assert referral.recipient == "tier2@example.test" and referral.reply_token == ref.token
    # A stored ticket's referral carries its history and the customer's originals.
    assert referral.context["history"][0]["text"].startswith("Hello")
    assert len(referral.context["attach_messages"]) == 1
    [b64] = referral.context["attach_raw"]  # for the renderer, which has no database
    assert b"Subject: Printer jams" in base64.b64decode(b64)
    assert rows["status-referred"].recipient == CUSTOMER

    # tier2 answers the referral (To: its Reply-To): it threads, as tier2's.
    later = datetime(2026, 3, 2, 13, tzinfo=UTC)
    answer = mail(sender="tom.engineer@example.test",
                  to=f"support+1.{ref.token}@example.test", subject="RE: Printer jams [SUP-1]",
                  body="#accept\n#next-update 2h\nLooking at it.")
    res = app.ingestor.ingest("INBOX", 1, [Fetched(2, answer, later)], app.rules.current,
                              later)
    assert res.outcomes["join"] == 1
    with app.sessions() as s:
        [ref] = s.scalars(select(Referral)).all()
        assert ref.accepted_at == later and ref.next_update_due is not None
        updates = [r for r in s.scalars(select(OutboxRow).order_by(OutboxRow.id))
                   if r.template == "status-accepted"]
    assert len(updates) == 1 and updates[0].context["next_update"]


def test_a_vendor_that_drops_our_headers_threads_by_its_case_number(
        db_url: str, make_app: Any, tmp_path: Path) -> None:
    app = make_app(None, db_url)
    app.ingestor.ingest("INBOX", 1, [Fetched(1, mail(subject="Array degraded"), NOW)],
                        app.rules.current, NOW)
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({"database": db_url, "support_address": SUPPORT,
                                   "rules_dir": str(RULES)}))
    res = CliRunner().invoke(main, ["--config", str(cfg), "tickets", "refer", "1",
                                    "vendor-acme", "--reason", "disk shelf firmware"])
    assert res.exit_code == 0, res.output
    with app.sessions() as s:
        [ref] = s.scalars(select(Referral)).all()
    # The vendor's first answer carries our token and names its case number: recorded.
    first = mail(sender="support@acme.example", to=f"support+1.{ref.token}@example.test",
                 subject="RE: Array degraded [SUP-1] - CASE-004711", body="#accept\n#eta 2d")
    # Later its ticket system writes from a no-reply address, without our headers.
    later = mail(sender="noreply@acme.example", subject="Case-004711 has been solved",
                 body="#status resolved\nReplace shelf firmware with 4.2.")
    stranger = mail(sender="someone@elsewhere.example", subject="CASE-004711",
                    body="#status in-progress")
    res = app.ingestor.ingest("INBOX", 1, [Fetched(2, first, NOW), Fetched(3, stranger, NOW)],
                              app.rules.current, NOW)
    assert (res.outcomes["join"], res.outcomes["new"]) == (1, 1)  # the stranger: a new one
    res = app.ingestor.ingest("INBOX", 1, [Fetched(4, later, NOW)], app.rules.current, NOW)
    assert res.outcomes["join"] == 1
    with app.sessions() as s:
        [ref] = s.scalars(select(Referral)).all()
        t = s.get(Ticket, 1)
        assert t is not None
        templates = [r.template for r in s.scalars(select(OutboxRow).order_by(OutboxRow.id))]
    assert ref.external_ref == "CASE-004711" and ref.accepted_at is not None
    assert t.status == "resolved"
    assert "status-resolved" in templates
