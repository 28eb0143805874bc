"""rules replay on stored history (SQLite and PostgreSQL): like is compared with like."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from mailflow.cli import main
from mailflow.prepare import Fetched
from mailflow.store.models import Ticket
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail, reply_to

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
RULES = Path(__file__).resolve().parent.parent.parent / "rules"


def _cli(cfg: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(cfg), "rules", "replay",
                                     "--since", "3650d", *args])


def test_a_ticket_raised_by_a_follow_up_is_unchanged_under_the_same_rules(
        db_url: str, make_app: Any, tmp_path: Path) -> None:
    app = make_app(None, db_url)
    first = mail(subject="Printer broken", body="it jams")
    app.ingestor.ingest("INBOX", 1, [Fetched(1, first, NOW)], app.rules.current, NOW)
    follow_up = reply_to(first, CUSTOMER, "now the whole company is down")
    app.ingestor.ingest("INBOX", 1, [Fetched(2, follow_up, NOW)], app.rules.current, NOW)
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None and t.severity == 1  # raised by the follow-up
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({"database": app.settings.database,
                                   "support_address": SUPPORT, "rules_dir": str(RULES)}))

    res = _cli(cfg, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    [item] = out["items"]
    assert out["count"] == 1 and out["changed"] == 0
    assert item["ticket"] == "SUP-1" and item["messages"] == 2 and item["changes"] == []
    assert item["current"]["severity"] == item["stored"]["severity"] == 1
    assert out["hits"]["outage"] == 1
    human = _cli(cfg, "--rules", str(RULES))
    assert human.exit_code == 0, human.output
    assert "replayed 1 ticket(s)" in human.output and "no ticket would change" in human.output

    candidate = tmp_path / "candidate"
    shutil.copytree(RULES, candidate)
    (candidate / "printers.yaml").write_text(
        "rules:\n  - name: printers\n    when: {subject: printer}\n"
        "    set: {category: administrative}\n")
    res = _cli(cfg, "--rules", str(candidate), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    [item] = out["items"]
    assert out["changed"] == 1
    assert item["changes"] == [{"field": "category", "current": "technical",
                                "candidate": "administrative"}]
    assert item["candidate"]["severity"] == 1  # the follow-up still raises it
    human = _cli(cfg, "--rules", str(candidate))
    assert "1 would change:" in human.output
    assert "SUP-1" in human.output and "category technical -> administrative" in human.output
