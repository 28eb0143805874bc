"""`tickets show` marks a referral accepted without #eta or #next-update (issue 11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from mailflow.cli import main
from mailflow.prepare import Fetched
from mailflow.store.db import transaction
from mailflow.tickets.apply import apply
from mailflow.tickets.effects import AcceptReferral, Refer, SetEta
from tests.conftest import SUPPORT
from tests.mails import mail

RULES = Path(__file__).resolve().parent.parent.parent / "rules"


def test_accepted_without_eta_is_shown_missing_until_given(db_url: str, make_app: Any,
                                                          tmp_path: Path) -> None:
    now = datetime.now(UTC)
    app = make_app(None, db_url)
    app.ingestor.ingest("INBOX", 1, [Fetched(1, mail(subject="Printer jams"), now)],
                        app.rules.current, now)
    ctx = app.ingestor.apply_context(now)
    with transaction(app.sessions) as s:
        apply(s, [Refer(1, "tier2", "tok0000000aa", "needs a technician"),
                  AcceptReferral(1, "tok0000000aa", "tier2", "tom@example.test")], ctx)
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({"database": db_url, "support_address": SUPPORT,
                                   "rules_dir": str(RULES)}))

    def show() -> str:
        res = CliRunner().invoke(main, ["--config", str(cfg), "tickets", "show", "SUP-1"])
        assert res.exit_code == 0, res.output
        return res.output

    assert "tier2: accepted, ETA MISSING" in show()
    with transaction(app.sessions) as s:
        apply(s, [SetEta(1, "tok0000000aa", "tier2", "tom@example.test",
                         eta=now + timedelta(hours=4))], ctx)
    out = show()
    assert "ETA MISSING" not in out and "tier2: accepted, ETA" in out
