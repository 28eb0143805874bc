"""Ticket state changes through ingest, on SQLite and PostgreSQL (no IMAP needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select, update

from mailflow.cli import main
from mailflow.ingest import Fetched
from mailflow.store.models import OutboxRow, Ticket, TicketEvent
from tests.mails import mail

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def _ingest(app, *raws: bytes, uid: list[int] = [0]):  # type: ignore[no-untyped-def]  # noqa: B006
    batch = []
    for raw in raws:
        uid[0] += 1
        batch.append(Fetched(uid[0], raw, NOW))
    return app.ingestor.ingest("test", 1, batch, app.rules.current, NOW)


def test_reply_to_resolved_ticket_reopens_and_counts(db_url: str, make_app) -> None:
    app = make_app(None, db_url)
    first = mail(subject="Laptop broken")
    _ingest(app, first)
    with app.sessions() as s, s.begin():
        s.execute(update(Ticket).values(status="resolved", resolved_at=NOW))
    res = _ingest(app, mail(subject="Re: Laptop broken [SUP-1]", body="broken again"))
    assert res.outcomes["reopen"] == 1
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None and t.status == "open" and t.reopen_count == 1
        kinds = list(s.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == 1)))
    assert "reopened" in kinds and kinds.count("ack-queued") == 1


def test_reply_long_after_close_opens_linked_ticket(db_url: str, make_app) -> None:
    app = make_app(None, db_url)
    _ingest(app, mail(subject="Printer"))
    with app.sessions() as s, s.begin():
        s.execute(update(Ticket).values(status="closed", closed_at=NOW - timedelta(days=90)))
    res = _ingest(app, mail(subject="Re: Printer [SUP-1]"))
    assert res.outcomes["new-linked"] == 1
    with app.sessions() as s:
        t2 = s.get(Ticket, 2)
        assert t2 is not None and t2.linked_ticket_id == 1


def test_same_batch_reply_joins_ticket_opened_in_that_batch(db_url: str, make_app) -> None:
    from tests.mails import reply_to

    app = make_app(None, db_url)
    first = mail(subject="Disk full")
    res = _ingest(app, first, reply_to(first, "customer@example.test",
                                       "now the whole company is down"))
    assert res.outcomes == {"new": 1, "join": 1}
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None and t.severity == 1  # raised within the batch


def test_outbox_cli_list_retry_drop(sqlite_url: str, make_app, tmp_path: Path) -> None:
    app = make_app(None, sqlite_url)
    _ingest(app, mail(subject="one"), mail(sender="b@example.test", subject="two"))
    with app.sessions() as s, s.begin():
        s.execute(update(OutboxRow).where(OutboxRow.id == 1)
                  .values(status="failed", last_error="550 no such user"))
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(f"database: {app.settings.database}\n")
    runner = CliRunner()
    out = runner.invoke(main, ["--config", str(cfg), "outbox", "list"])
    assert out.exit_code == 0 and "failed" in out.output and "550 no such user" in out.output
    assert runner.invoke(main, ["--config", str(cfg), "outbox", "retry", "1"]).exit_code == 0
    assert runner.invoke(main, ["--config", str(cfg), "outbox", "drop", "2"]).exit_code == 0
    assert runner.invoke(main, ["--config", str(cfg), "outbox", "drop", "99"]).exit_code == 1
    with app.sessions() as s:
        assert [r.status for r in s.scalars(select(OutboxRow).order_by(OutboxRow.id))] == \
            ["pending", "dropped"]


def test_classification_is_recorded_with_rules_and_version(db_url: str, make_app) -> None:
    app = make_app(None, db_url)
    _ingest(app, mail(subject="Invoice 12 is wrong"))
    with app.sessions() as s:
        ev = s.scalars(select(TicketEvent).where(TicketEvent.kind == "opened")).one()
        t = s.get(Ticket, ev.ticket_id)
    assert ev.data["rules"] == ["billing-and-sales"]
    assert (ev.data["severity"], ev.data["category"], ev.data["owner_group"]) == \
        (t.severity, "administrative", "management")
    assert "owner management (rules billing-and-sales)" in ev.summary
    assert ev.data["rules_version"] == app.rules.current.version == t.rules_version
    assert (t.category, t.owner_group) == ("administrative", "management")


def test_schema_from_migrations_matches_the_models(db_url: str) -> None:
    """Every model change needs a migration: this fails when one is missing."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from mailflow.store.db import make_engine, upgrade
    from mailflow.store.models import Base

    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_full_text_is_stored_once_unless_something_was_cut(db_url: str, make_app) -> None:
    from mailflow.store.models import StoredMessage
    from tests.mails import reply_to

    app = make_app(None, db_url)
    first = mail(subject="Backup failed", body="The nightly backup failed again.\n")
    quoted = "Any news?\n\nOn Monday you wrote:\n> The nightly backup failed again.\n"
    _ingest(app, first, reply_to(first, "customer@example.test", quoted))
    with app.sessions() as s:
        plain, reply = s.scalars(select(StoredMessage).order_by(StoredMessage.id)).all()
        assert plain.body_text is None
        assert plain.full_text == plain.new_text == "The nightly backup failed again."
        assert reply.new_text == "Any news?"
        assert reply.body_text is not None and "> The nightly backup" in reply.full_text
