"""Listings: aligned tables (wide characters too), ellipsis, local time, no colour in a
pipe, one JSON shape; tickets list filters; outbox show; quarantine drop."""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from mailflow.cli import main
from mailflow.cli.tables import Col, local_time, print_table
from mailflow.cli.tickets import since_cutoff
from mailflow.mailstack import MailStack
from mailflow.store.db import make_engine, session_factory, transaction
from mailflow.store.models import QuarantinedMessage, Ticket
from tests.conftest import SUPPORT
from tests.mails import mail

RULES = Path(__file__).parents[2] / "rules"
LONG = "サポート: プリンターが壊れました " + "とても長い件名です " * 12


@pytest.fixture
def desk(stack: MailStack, tmp_path: Path) -> tuple[CliRunner, Path, str]:
    url = f"sqlite:///{tmp_path}/m.db"
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(stack.settings_yaml(url, f"rules_dir: {RULES}\ntimezone: Asia/Tokyo\n"))
    runner = CliRunner()
    for args in (["db", "upgrade"], ["run", "--once"]):  # the first look sets the checkpoint
        res = runner.invoke(main, ["--config", str(cfg), *args])
        assert res.exit_code == 0, res.output
    stack.append(SUPPORT, [mail(subject=LONG),
                           mail(sender="Other <other@example.test>", subject="Invoice"),
                           mail(sender="Robot <robot@example.test>", subject="URGENT: down")])
    res = runner.invoke(main, ["--config", str(cfg), "run", "--once"])
    assert res.exit_code == 0, res.output
    return runner, cfg, url


def _run(desk: tuple[CliRunner, Path, str], *args: str) -> str:
    runner, cfg, _ = desk
    res = runner.invoke(main, ["--config", str(cfg), *args], env={"COLUMNS": "150"})
    assert res.exit_code == 0, res.output
    return res.output


def test_tickets_table_is_aligned_cut_local_and_plain(desk: Any) -> None:
    out = _run(desk, "tickets", "list")
    lines = [ln for ln in out.splitlines() if ln.strip()]
    header, rule, rows = lines[0], lines[1], lines[2:]
    assert re.match(r"\s*Ticket\s+Status\s+Sev\s+Category\s+Owner\s+Requester\s+Updated\s+"
                    r"Subject", header)
    assert set(rule.strip()) <= {"─", " "}
    assert len(rows) == 3 and "\x1b[" not in out  # no colour in a pipe
    # Every row's "open" starts at the same terminal column as the header's "Status",
    # the CJK row included (rich counts cells, not characters).
    status = {i["ref"]: i["status"] for i in json.loads(
        _run(desk, "tickets", "list", "--json"))["items"]}
    col = cell_len(header[:header.index("Status")])
    for row in rows:
        ref = row.split()[0]
        assert cell_len(row[:row.index(" " + status[ref]) + 1]) == col, row
        assert cell_len(row) <= 150
    cjk = next(r for r in rows if "サポート" in r)
    assert cjk.rstrip().endswith("…")
    with session_factory(make_engine(desk[2]))() as s:
        t = s.get(Ticket, 1)
        assert t is not None
        tokyo = t.updated_at.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    assert tokyo.strftime("%Y-%m-%d %H:%M") in cjk and "." not in tokyo.strftime("%H:%M")


def test_tickets_show_times_are_local_without_microseconds(desk: Any) -> None:
    shown = _run(desk, "tickets", "show", "SUP-1")
    assert "サポート" in shown and re.search(r"\d\d:\d\d:\d\d\.\d", shown) is None
    with session_factory(make_engine(desk[2]))() as s:
        t = s.get(Ticket, 1)
        assert t is not None
        opened = t.created_at.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    assert opened.strftime("%Y-%m-%d %H:%M") in shown
    assert "サポート" in _run(desk, "tickets", "show", "SUP-1", "--json")


def test_tickets_list_filters(desk: Any) -> None:
    def refs(*args: str) -> list[str]:
        data = json.loads(_run(desk, "tickets", "list", "--json", *args))
        assert set(data) == {"items", "count", "quarantined"}
        assert data["count"] == len(data["items"])
        return sorted(i["ref"] for i in data["items"])

    assert refs() == ["SUP-1", "SUP-2", "SUP-3"]
    assert refs("--requester", "OTHER@example.test") == ["SUP-2"]
    assert refs("--requester", "@example.test") == ["SUP-1", "SUP-2", "SUP-3"]
    items = json.loads(_run(desk, "tickets", "list", "--json"))["items"]
    by_status: dict[str, list[str]] = {}
    for i in items:
        by_status.setdefault(i["status"], []).append(i["ref"])
    assert refs("--status", "resolved") == sorted(by_status.get("resolved", []))
    assert refs("--status", "open", "--status", "referred") == sorted(
        by_status.get("open", []) + by_status.get("referred", []))
    assert refs("--since", "1h") == ["SUP-1", "SUP-2", "SUP-3"]
    assert refs("--since", "2999-01-01") == []
    sevs = {i["ref"]: i["severity"] for i in json.loads(
        _run(desk, "tickets", "list", "--json"))["items"]}
    one = next(r for r, v in sevs.items())
    assert one in refs("--severity", str(sevs[one]))
    owners = {i["owner_group"] for i in json.loads(_run(desk, "tickets", "list", "--json"))
              ["items"]}
    some = sorted(o for o in owners if o)[0]
    assert refs("--owner", some) and all(
        i["owner_group"] == some for i in json.loads(
            _run(desk, "tickets", "list", "--json", "--owner", some))["items"])
    runner, cfg, _ = desk
    bad = runner.invoke(main, ["--config", str(cfg), "tickets", "list", "--since", "soon"])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_outbox_list_and_show(desk: Any) -> None:
    data = json.loads(_run(desk, "outbox", "list", "--all", "--json"))
    assert set(data) == {"items", "count"} and data["count"] >= 1
    row = data["items"][0]
    assert {"id", "ticket", "kind", "to", "status", "attempts", "message_id"} <= set(row)
    table = _run(desk, "outbox", "list", "--all")
    assert re.match(r"\s*ID\s+Status\s+Kind\s+Ticket\s+To", table.splitlines()[0])
    shown = _run(desk, "outbox", "show", str(row["id"]))
    assert "Message-ID: <" + row["message_id"] in shown and "Subject: " in shown
    runner, cfg, _ = desk
    missing = runner.invoke(main, ["--config", str(cfg), "outbox", "show", "999"])
    assert missing.exit_code == 1 and "no outbox row 999" in missing.output


def test_outbox_show_renders_mail_not_yet_attempted(desk: Any) -> None:
    url = desk[2]
    with transaction(session_factory(make_engine(url))) as s:
        from mailflow.store.models import OutboxRow
        row = s.get(OutboxRow, 1)
        assert row is not None
        row.raw, row.status = None, "pending"
        message_id = row.message_id
    shown = _run(desk, "outbox", "show", "1")
    assert "Message-ID: <" + message_id in shown and "Subject: " in shown


def test_quarantine_list_and_drop(desk: Any) -> None:
    runner, cfg, url = desk
    with transaction(session_factory(make_engine(url))) as s:
        s.add(QuarantinedMessage(mailbox="INBOX", uidvalidity=1, uid=42, dedupe_key="k" * 64,
                                 reason="unparseable: no headers 壊れた",
                                 raw=b"garbage", created_at=datetime.now(UTC)))
    data = json.loads(_run(desk, "quarantine", "list", "--json"))
    assert set(data) == {"items", "count"} and data["items"][0]["uid"] == 42
    table = _run(desk, "quarantine", "list")
    assert re.match(r"\s*ID\s+Kept\s+Mailbox\s+UID\s+State\s+Reason", table.splitlines()[0])
    assert "held" in table and "壊れた" in table
    tickets = _run(desk, "tickets", "list")
    assert "1 message(s) in quarantine" in tickets
    qid = str(data["items"][0]["id"])
    assert _run(desk, "quarantine", "drop", qid).strip() == (
        f"quarantined message #{qid} (INBOX uid 42) dropped")
    assert json.loads(_run(desk, "quarantine", "list", "--json"))["count"] == 0
    again = runner.invoke(main, ["--config", str(cfg), "quarantine", "drop", qid])
    assert again.exit_code == 1 and f"no quarantined message {qid}" in again.output


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, coloured in ((Tty(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stdout", stream)
        monkeypatch.delenv("NO_COLOR", raising=False)
        print_table([Col("Status", "status")], [{"status": "failed"}], "none",
                    {"failed": "red"})
        assert ("\x1b[" in stream.getvalue()) is coloured


def test_since_and_local_time() -> None:
    tz = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert since_cutoff("2d", now, tz) == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert since_cutoff("2026-11-01", now, tz) == datetime(2026, 11, 1, tzinfo=tz)
    with pytest.raises(click.BadParameter):
        since_cutoff("yesterday", now, tz)
    naive_utc = datetime(2026, 7, 1, 10, 0, 5, 123456)
    assert local_time(naive_utc, tz) == "2026-07-01 12:00"
    assert local_time(naive_utc, tz, seconds=True) == "2026-07-01 12:00:05"
    assert local_time(None, tz) == "-"
