"""Walking skeleton: APPEND -> run --once -> ticket SUP-1 -> acknowledgment received."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from mailflow.cli import main
from mailflow.imap import PROCESSED_KEYWORD
from mailflow.mailstack import MailStack
from mailflow.store.db import make_engine, session_factory
from mailflow.store.models import OutboxRow, Ticket
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail


def _write_config(stack: MailStack, db_url: str, tmp_path: Path) -> Path:
    cfg = tmp_path / "mailflow.yaml"
    rules = Path(__file__).parents[2] / "rules"
    cfg.write_text(stack.settings_yaml(db_url, f"rules_dir: {rules}\n"))
    return cfg


def test_append_run_once_opens_ticket_and_acknowledges(stack: MailStack, db_url: str,
                                                       tmp_path: Path) -> None:
    cfg = _write_config(stack, db_url, tmp_path)
    original = mail(subject="Cannot print invoices", body="The printer says PC LOAD LETTER.")
    stack.append(SUPPORT, [original])
    runner = CliRunner()

    refused = runner.invoke(main, ["--config", str(cfg), "run", "--once"])
    assert refused.exit_code == 1
    assert "mailflow db upgrade" in refused.output

    assert runner.invoke(main, ["--config", str(cfg), "db", "upgrade"]).exit_code == 0
    res = runner.invoke(main, ["--config", str(cfg), "run", "--once"])
    assert res.exit_code == 0, res.output
    assert "new 1" in res.output and "sent 1" in res.output

    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        t = s.scalars(select(Ticket)).one()
        assert t.id == 1 and t.requester == CUSTOMER and t.status == "open"
        row = s.scalars(select(OutboxRow)).one()
        assert row.status == "sent" and row.sent_at is not None
    engine.dispose()

    got = stack.wait_for(CUSTOMER, 1)
    assert len(got) == 1
    ack = message_from_bytes(got[0], policy=default)
    orig = message_from_bytes(original, policy=default)
    assert ack["Subject"] == "Re: Cannot print invoices [SUP-1]"
    assert ack["In-Reply-To"] == orig["Message-ID"]
    assert orig["Message-ID"] in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All"
    assert ack["Message-ID"] == f"<{row.message_id}>"
    assert ack["Reply-To"].addresses[0].addr_spec.startswith("support+1.")
    assert ack.get_content_type() == "multipart/alternative"
    assert "PC LOAD LETTER" in ack.get_body(("plain",)).get_content()

    # Marked processed on the server only now, and a second run does nothing more.
    with stack.imap(SUPPORT) as c:
        c.select_folder("INBOX")
        flags = c.get_flags(c.search("ALL"))
        assert all(PROCESSED_KEYWORD in f and b"\\Seen" in f for f in flags.values())
    again = runner.invoke(main, ["--config", str(cfg), "run", "--once"])
    assert again.exit_code == 0 and "nothing new" in again.output
    assert len(stack.messages(CUSTOMER)) == 1

    listing = runner.invoke(main, ["--config", str(cfg), "tickets", "list", "--json"])
    assert '"ref": "SUP-1"' in listing.output
    shown = runner.invoke(main, ["--config", str(cfg), "tickets", "show", "SUP-1"])
    assert shown.exit_code == 0 and "ack-queued" in shown.output and "mail-sent" in shown.output


def test_run_once_reports_unreachable_or_refused_imap_clearly(stack: MailStack,
                                                              sqlite_url: str,
                                                              tmp_path: Path,
                                                              monkeypatch) -> None:
    from mailflow.mailstack import free_port

    cfg = _write_config(stack, sqlite_url, tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(cfg), "db", "upgrade"]).exit_code == 0
    monkeypatch.setenv("MAILFLOW_IMAP_PASSWORD", "wrong-password-123")
    res = runner.invoke(main, ["--config", str(cfg), "run", "--once"])
    assert res.exit_code == 1 and "IMAP 127.0.0.1" in res.output
    assert "wrong-password-123" not in res.output
    monkeypatch.delenv("MAILFLOW_IMAP_PASSWORD")
    res = runner.invoke(main, ["--config", str(cfg), "run", "--once"])
    assert res.exit_code == 2 and "MAILFLOW_IMAP_PASSWORD" in res.output
    cfg.write_text(cfg.read_text().replace(f"port: {stack.imap_port}", f"port: {free_port()}"))
    monkeypatch.setenv("MAILFLOW_IMAP_PASSWORD", "secret")
    res = runner.invoke(main, ["--config", str(cfg), "run", "--once"])
    assert res.exit_code == 1 and "IMAP 127.0.0.1" in res.output
