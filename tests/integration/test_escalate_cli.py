"""``mailflow tickets escalate`` and ``mailflow sla``: people escalate, and see the clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from sqlalchemy import select

from mailflow.cli import main
from mailflow.prepare import Fetched
from mailflow.scheduler import Scheduler
from mailflow.store.models import OutboxRow, Ticket, TicketEvent
from tests.conftest import SUPPORT
from tests.mails import mail

RULES = Path(__file__).resolve().parent.parent.parent / "rules"


def test_a_person_escalates_and_sla_commands_show_it(db_url: str, make_app: Any,
                                                     tmp_path: Path) -> None:
    now = datetime.now(UTC) - timedelta(days=3)
    app = make_app(None, db_url)
    app.ingestor.ingest("INBOX", 1, [Fetched(1, mail(subject="Printer jams"), now)],
                        app.rules.current, now)
    Scheduler(app.settings, app.sessions).tick(datetime.now(UTC))
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({"database": db_url, "support_address": SUPPORT,
                                   "rules_dir": str(RULES)}))

    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, ["--config", str(cfg), *args])

    bad = cli("tickets", "escalate", "SUP-1", "--to", "tier9", "--reason", "x")
    assert bad.exit_code == 2 and "no such group" in bad.output
    ok = cli("tickets", "escalate", "SUP-1", "--to", "tier2", "--reason", "customer is stuck")
    assert ok.exit_code == 0, ok.output
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None and (t.status, t.owner_group) == ("referred", "tier2")
        events = s.scalars(select(TicketEvent).where(TicketEvent.kind == "escalated")).all()
        [esc] = [e for e in events if e.data["step"] == "manual"]
        assert esc.data["group"] == "tier2" and esc.data["by"].startswith("cli:")
        kinds = sorted(r.kind for r in s.scalars(select(OutboxRow)))
    assert "referral" in kinds and "customer-notice" in kinds

    explained = cli("sla", "explain", "SUP-1")
    assert explained.exit_code == 0, explained.output
    assert "first response" in explained.output.lower()
    overdue = cli("sla", "overdue", "--json")
    assert overdue.exit_code == 0, overdue.output
    rows = yaml.safe_load(overdue.output)
    assert any(r["ticket"] == "SUP-1" and r["clock"] == "first_response" for r in rows)
    listed = cli("tickets", "list", "--overdue", "--json")
    assert listed.exit_code == 0, listed.output
    assert "SUP-1" in listed.output
    none_due = cli("tickets", "list", "--due-within", "1h", "--status", "closed")
    assert none_due.exit_code == 0 and "SUP-1" not in none_due.output
    shown = cli("tickets", "show", "SUP-1")
    assert shown.exit_code == 0, shown.output
    assert "Service levels:" in shown.output and "first_response" in shown.output
    assert "Escalation steps fired:" in shown.output
