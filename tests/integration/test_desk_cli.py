"""The desk from the command line, on SQLite and PostgreSQL: tickets resolve, close,
reopen, assign and note; quarantine release; rules test --effects (which writes nothing)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import func, select, update

from mailflow import desk
from mailflow.cli import main
from mailflow.prepare import Fetched, prepare_one, raw_key
from mailflow.store.models import (
    Base,
    QuarantinedMessage,
    StoredMessage,
    Ticket,
    TicketEvent,
)
from mailflow.tickets.apply import apply
from mailflow.tickets.effects import Quarantine
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail, reply_to

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
RULES = Path(__file__).resolve().parent.parent.parent / "rules"


class Desk:
    """An app on a migrated database, a config file for the CLI, and helpers."""

    def __init__(self, app: Any, tmp_path: Path):
        self.app = app
        self.uid = 0
        self.cfg = tmp_path / "cli.yaml"
        self.cfg.write_text(yaml.safe_dump({"database": app.settings.database,
                                            "support_address": SUPPORT,
                                            "rules_dir": str(RULES)}))

    def ingest(self, *raws: bytes) -> Any:
        batch = []
        for raw in raws:
            self.uid += 1
            batch.append(Fetched(self.uid, raw, NOW))
        return self.app.ingestor.ingest("INBOX", 1, batch, self.app.rules.current, NOW)

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.cfg), *args])

    def ticket(self, tid: int) -> Ticket:
        with self.app.sessions() as s:
            t = s.get(Ticket, tid)
            assert t is not None
            return t

    def events(self, tid: int) -> list[tuple[str, str, str, dict[str, Any]]]:
        with self.app.sessions() as s:
            return [(e.kind, e.actor, e.summary, e.data) for e in s.scalars(
                select(TicketEvent).where(TicketEvent.ticket_id == tid)
                .order_by(TicketEvent.id))]

    def count(self, model: Any) -> int:
        with self.app.sessions() as s:
            return s.scalar(select(func.count()).select_from(model)) or 0

    def quarantined(self, qid: int) -> QuarantinedMessage:
        with self.app.sessions() as s:
            q = s.get(QuarantinedMessage, qid)
            assert q is not None
            return q

    def quarantine(self, raw: bytes, reason: str, key: str | None = None) -> None:
        """A row as ingest's shunt leaves it (the message's key, or the raw one)."""
        self.uid += 1
        f = Fetched(self.uid, raw, NOW)
        p = prepare_one(f, self.app.rules.current, NOW, UTC, self.app.ingestor.own)
        with self.app.sessions() as s, s.begin():
            apply(s, [Quarantine(f, key or p.key, reason, "INBOX", 1)],
                  self.app.ingestor.apply_context(NOW))


@pytest.fixture
def dk(db_url: str, make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    monkeypatch.setenv("USER", "ann")
    return Desk(make_app(None, db_url), tmp_path)


def _one_line(res: Result, code: int, says: str) -> None:
    assert res.exit_code == code, res.output
    assert res.output.strip() == f"mailflow: {says}"


def test_desk_commands_change_the_ticket_and_leave_the_trail(dk: Desk) -> None:
    dk.ingest(mail(subject="Printer broken"))
    res = dk.cli("tickets", "resolve", "SUP-1", "--note", "toner replaced")
    assert res.exit_code == 0 and res.output == "SUP-1 resolved\n"
    t = dk.ticket(1)
    assert t.status == "resolved" and t.resolved_at is not None
    _one_line(dk.cli("tickets", "resolve", "1"), 1, "SUP-1 is already resolved")

    assert dk.cli("tickets", "reopen", "1", "--reason", "customer called").exit_code == 0
    t = dk.ticket(1)
    assert (t.status, t.reopen_count, t.resolved_at) == ("open", 1, None)
    _one_line(dk.cli("tickets", "reopen", "1", "--reason", "again"), 1,
              "SUP-1 is not resolved or closed (status open): nothing to reopen")

    assert dk.cli("tickets", "assign", "1", "tier2", "--reason", "disk array").exit_code == 0
    assert dk.ticket(1).owner_group == "tier2"
    _one_line(dk.cli("tickets", "assign", "1", "tier9"), 2,
              "unknown group 'tier9' (known: frontline, management, tier2, vendor-acme)")
    _one_line(dk.cli("tickets", "assign", "1", "tier2"), 1, "SUP-1 is already owned by tier2")

    assert dk.cli("tickets", "note", "1", "called back, all fine").exit_code == 0
    assert dk.cli("tickets", "close", "SUP-1").exit_code == 0
    t = dk.ticket(1)
    assert t.status == "closed" and t.closed_at is not None
    _one_line(dk.cli("tickets", "resolve", "1"), 1,
              "SUP-1 is closed: reopen it first to resolve it again")
    _one_line(dk.cli("tickets", "close", "1"), 1, "SUP-1 is already closed")
    _one_line(dk.cli("tickets", "note", "SUP-99", "x"), 1, "no ticket SUP-99")
    _one_line(dk.cli("tickets", "close", "SUP-x"), 2,
              "not a ticket reference: 'SUP-x' (expected SUP-N)")

    trail = dk.events(1)
    assert [k for k, *_ in trail] == ["opened", "ack-queued", "status-changed", "note",
                                      "reopened", "owner-changed", "note", "status-changed"]
    assert trail[2:] == [
        ("status-changed", "cli:ann", "resolved from the command line",
         {"status": "resolved", "previous": "open"}),
        ("note", "cli:ann", "toner replaced", {}),
        ("reopened", "cli:ann", "customer called", {}),
        ("owner-changed", "cli:ann", "disk array",
         {"owner_group": "tier2", "previous": "frontline"}),
        ("note", "cli:ann", "called back, all fine", {}),
        ("status-changed", "cli:ann", "closed from the command line",
         {"status": "closed", "previous": "open"}),
    ]


def test_release_after_a_fix_opens_the_ticket_once(dk: Desk) -> None:
    raw = mail(sender="Dora <dora@example.test>", subject="VPN down")
    dk.quarantine(raw, "could not be stored: OperationalError: disk full")
    res = dk.cli("quarantine", "release", "1")
    assert res.exit_code == 0 and res.output == "#1 released: new, SUP-1\n"
    t = dk.ticket(1)
    assert t.requester == "dora@example.test" and t.severity == 2  # rules: outage
    kinds = [(k, a) for k, a, *_ in dk.events(1)]
    assert kinds == [("opened", "dora@example.test"), ("ack-queued", "mailflow"),
                     ("note", "cli:ann")]
    assert "released from quarantine #1" in dk.events(1)[2][2]
    assert dk.quarantined(1).released_at is not None and dk.count(StoredMessage) == 1
    again = dk.cli("quarantine", "release", "1")
    assert again.exit_code == 1 and again.output.count("\n") == 1
    assert again.output.startswith("mailflow: quarantined message 1 was already released (")
    assert dk.count(Ticket) == 1 and dk.count(StoredMessage) == 1
    _one_line(dk.cli("quarantine", "release", "7"), 1, "no quarantined message 7")


def test_release_of_a_reply_joins_its_ticket(dk: Desk) -> None:
    first = mail(subject="Laptop")
    dk.ingest(first)
    dk.quarantine(reply_to(first, CUSTOMER, "still broken"), "could not be stored: boom")
    res = dk.cli("quarantine", "release", "1")
    assert res.exit_code == 0 and res.output == "#1 released: join, SUP-1\n"
    assert dk.count(Ticket) == 1
    with dk.app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(StoredMessage)
                        .where(StoredMessage.ticket_id == 1)) == 2


def test_release_of_a_message_stored_meanwhile_stores_nothing_twice(dk: Desk) -> None:
    raw = mail(subject="Screen flickers")
    # Quarantined under its raw key by an older parser; stored since under its own key.
    dk.quarantine(raw, "unparseable (old parser)", key=raw_key(raw))
    dk.ingest(raw)
    assert dk.count(StoredMessage) == 1
    res = dk.cli("quarantine", "release", "1")
    assert res.exit_code == 0
    assert res.output == "#1 was already stored (SUP-1): marked released, nothing stored twice\n"
    assert dk.count(StoredMessage) == 1 and dk.count(Ticket) == 1
    assert dk.quarantined(1).released_at is not None


def test_release_that_still_fails_stays_with_the_new_reason(dk: Desk) -> None:
    dk.ingest(b"\x00 not mail at all")
    with dk.app.sessions() as s, s.begin():
        s.execute(update(QuarantinedMessage).values(reason="old reason"))
    res = dk.cli("quarantine", "release", "1")
    assert res.exit_code == 1
    q = dk.quarantined(1)
    assert q.released_at is None and q.reason != "old reason"
    assert res.output.strip() == f"mailflow: #1 stays in quarantine: {q.reason}"


def test_release_whose_store_step_fails_writes_nothing_but_the_reason(
        dk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    dk.quarantine(mail(subject="Mouse"), "could not be stored: boom")

    def broken(s: Any, effects: Any, ctx: Any) -> Any:
        apply(s, effects, ctx)  # written, then the step fails: all of it rolled back
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(desk, "apply", broken)
    res = dk.cli("quarantine", "release", "1")
    assert res.exit_code == 1
    assert res.output.strip() == ("mailflow: #1 stays in quarantine: could not be stored: "
                                  "RuntimeError: disk on fire")
    q = dk.quarantined(1)
    assert q.released_at is None and q.reason.endswith("disk on fire")
    assert dk.count(Ticket) == 0 and dk.count(StoredMessage) == 0 and dk.count(TicketEvent) == 0


def _snapshot(dk: Desk) -> dict[str, list[Any]]:
    with dk.app.engine.connect() as c:
        return {t.name: [tuple(r) for r in c.execute(t.select().order_by(*t.primary_key))]
                for t in Base.metadata.sorted_tables}


def test_rules_test_effects_against_the_database_writes_nothing(dk: Desk,
                                                                tmp_path: Path) -> None:
    first = mail(subject="Printer broken")
    dk.ingest(first)
    new = tmp_path / "new.eml"
    new.write_bytes(mail(sender="Eve <eve@example.test>", subject="Mail server down"))
    reply = tmp_path / "reply.eml"
    reply.write_bytes(reply_to(first, CUSTOMER, "the whole company is down now"))
    before = _snapshot(dk)

    res = dk.cli("rules", "test", "--effects", "--json", str(new), str(reply))
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    items = out["items"]
    assert out["count"] == 2 and out["against"].startswith("the database ")
    assert [(i["file"], i["outcome"]) for i in items] == [(str(new), "new"),
                                                           (str(reply), "join")]
    assert [e["type"] for e in items[0]["effects"]] == ["OpenTicket", "QueueMail",
                                                        "AddMessage"]
    assert items[0]["effects"][0]["description"].startswith(
        "open ticket (-1) for eve@example.test: severity 2")
    assert [e["type"] for e in items[1]["effects"]] == ["Note", "AddMessage", "SetSeverity"]
    assert items[1]["effects"][2]["description"].startswith("severity of ticket 1: 3 -> 1")

    plain = json.loads(dk.cli("rules", "test", "--json", str(new)).output)
    [only] = plain["items"]
    assert (only["severity"], only["category"]) == (2, "technical") and "effects" not in only
    assert [r["rule"] for r in only["rules"] if r["matched"]] == ["outage"]

    human = dk.cli("rules", "test", "--effects", str(reply))
    assert human.exit_code == 0
    assert "effects against the database " in human.output
    assert "  effects (join):\n" in human.output
    assert "    add message <" in human.output and "> to ticket 1 as ticket" in human.output
    assert _snapshot(dk) == before  # nothing written, nothing left locked


def test_rules_test_effects_without_a_database_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({"database": f"sqlite:///{missing}",
                                   "support_address": SUPPORT, "rules_dir": str(RULES)}))
    eml = tmp_path / "m.eml"
    eml.write_bytes(mail(subject="Re: Printer [SUP-1]"))
    res = CliRunner().invoke(main, ["--config", str(cfg), "rules", "test", "--effects",
                                    str(eml)])
    assert res.exit_code == 0, res.output
    assert f"effects against an empty store (no database file at {missing})" in res.output
    assert "  effects (new):" in res.output
    assert not missing.exists()


def test_rules_test_effects_on_an_outdated_schema_uses_an_empty_store(tmp_path: Path) -> None:
    from alembic import command

    from mailflow.store.db import alembic_config, head_revision, make_engine

    db = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{db}")
    command.upgrade(alembic_config(engine), "0001")
    engine.dispose()
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({"database": f"sqlite:///{db}",
                                   "support_address": SUPPORT, "rules_dir": str(RULES)}))
    eml = tmp_path / "m.eml"
    eml.write_bytes(mail())
    res = CliRunner().invoke(main, ["--config", str(cfg), "rules", "test", "--effects",
                                    "--json", str(eml)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    [item] = out["items"]
    assert out["against"] == (f"an empty store (the database schema is 0001, not the "
                               f"current {head_revision()})")
    assert item["outcome"] == "new"
