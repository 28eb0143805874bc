"""``mailflow export`` on both databases: JSON lines and one mbox per ticket."""

from __future__ import annotations

import base64
import io
import json
import mailbox
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from sqlalchemy import update

from mailflow import export as ex
from mailflow.cli import main
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.store.models import Ticket
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail, reply_to

ROOT = Path(__file__).parents[2]


def _two_tickets(stack: MailStack, app: Any) -> None:
    """Ticket 1: a mail, our acknowledgment, the customer's reply. Ticket 2: one mail whose
    body has a line starting with "From " (mbox must quote it)."""
    stack.append(SUPPORT, [mail(subject="VPN broken")])
    run_once(app)
    [ack] = stack.wait_for(CUSTOMER, 1)
    stack.append(SUPPORT, [reply_to(ack, CUSTOMER, "still broken"),
                           mail(sender="Other <other@example.test>", subject="Invoice",
                                body="Hello,\nFrom now on please invoice us monthly.\n")])
    run_once(app)


def write_config(tmp_path: Path, db_url: str) -> Path:
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({"database": db_url, "support_address": SUPPORT,
                                   "rules_dir": str(ROOT / "rules")}))
    return cfg


def test_jsonl_has_every_ticket_with_messages_events_and_sent_mail(
        stack: MailStack, db_url: str, make_app) -> None:
    app = make_app(stack, db_url)
    _two_tickets(stack, app)
    out = io.StringIO()
    report = ex.export_jsonl(app.sessions, out, ex.EVERYTHING, "SUP")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [t["ref"] for t in lines] == ["SUP-1", "SUP-2"]
    assert report.tickets == 2 and report.messages == 3
    first = lines[0]
    assert [m["subject"] for m in first["messages"]] == ["VPN broken",
                                                         "Re: Re: VPN broken [SUP-1]"]
    assert b"Subject: VPN broken" in base64.b64decode(first["messages"][0]["raw_base64"])
    assert "still broken" in first["messages"][1]["text"]
    [ack] = first["sent"]
    assert ack["kind"] == "acknowledgment" and ack["status"] == "sent"
    assert ack["to"] == CUSTOMER and b"SUP-1" in base64.b64decode(ack["raw_base64"])
    assert {"opened", "ack-queued", "customer-message"} <= {e["kind"] for e in first["events"]}
    assert CUSTOMER in first["participants"]

    lean = io.StringIO()
    ex.export_jsonl(app.sessions, lean, ex.EVERYTHING, "SUP", raw=False)
    assert "raw_base64" not in lean.getvalue()


def test_since_takes_only_tickets_changed_since(stack: MailStack, db_url: str,
                                                make_app) -> None:
    app = make_app(stack, db_url)
    _two_tickets(stack, app)
    now = datetime.now(UTC)
    with app.sessions() as s, s.begin():
        s.execute(update(Ticket).where(Ticket.id == 1)
                  .values(updated_at=now - timedelta(days=40)))
    out = io.StringIO()
    ex.export_jsonl(app.sessions, out, ex.parse_since("30d", now), "SUP", raw=False)
    assert [json.loads(x)["ref"] for x in out.getvalue().splitlines()] == ["SUP-2"]
    since = ex.parse_since((now - timedelta(days=41)).date().isoformat(), now)
    out = io.StringIO()
    ex.export_jsonl(app.sessions, out, since, "SUP", raw=False)
    assert len(out.getvalue().splitlines()) == 2


def test_pages_of_tickets_cover_everything_once(stack: MailStack, db_url: str,
                                                make_app) -> None:
    app = make_app(stack, db_url)
    stack.append(SUPPORT, [mail(subject=f"ticket {i}") for i in range(7)])
    run_once(app)
    with app.sessions() as s:
        pages = [[t.id for t in page] for page in ex.iter_tickets(s, ex.EVERYTHING, page=3)]
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]


def test_cli_mbox_one_file_per_ticket(stack: MailStack, db_url: str,
                                                    make_app, tmp_path: Path) -> None:
    app = make_app(stack, db_url)
    _two_tickets(stack, app)
    cfg = write_config(tmp_path, db_url)
    outdir = tmp_path / "mbox"
    res = CliRunner().invoke(main, ["--config", str(cfg), "export", "--format", "mbox",
                                    "-o", str(outdir)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in outdir.iterdir()) == ["SUP-1.mbox", "SUP-2.mbox"]
    box = mailbox.mbox(str(outdir / "SUP-1.mbox"))
    subjects = [str(m["Subject"]) for m in box]
    box.close()
    # The customer's mail, the reply and our acknowledgment (test mail carries old dates,
    # so time order is not the order of the test's steps).
    assert sorted(subjects) == ["Re: Re: VPN broken [SUP-1]", "Re: VPN broken [SUP-1]",
                                "VPN broken"]
    raw = (outdir / "SUP-2.mbox").read_bytes()
    assert raw.startswith(b"From other@example.test ")
    assert b"\n>From now on please invoice us monthly." in raw and b"\r\n" not in raw


def test_cli_jsonl_to_file_and_bad_since(stack: MailStack, db_url: str, make_app,
                                         tmp_path: Path) -> None:
    app = make_app(stack, db_url)
    _two_tickets(stack, app)
    cfg = write_config(tmp_path, db_url)
    target = tmp_path / "backup.jsonl"
    runner = CliRunner()
    res = runner.invoke(main, ["--config", str(cfg), "export", "--since", "2020-01-01",
                               "-o", str(target)])
    assert res.exit_code == 0, res.output
    assert len(target.read_text().splitlines()) == 2
    assert not target.with_name("backup.jsonl.tmp").exists()
    res = runner.invoke(main, ["--config", str(cfg), "export", "--since", "last tuesday"])
    assert res.exit_code == 2 and "--since" in res.output
    res = runner.invoke(main, ["--config", str(cfg), "export", "--format", "mbox"])
    assert res.exit_code == 2 and "--output" in res.output
