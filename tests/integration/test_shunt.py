"""One bad message never stops the others; the watcher never dies (issue 9)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import func, select, text

from mailflow.daemon import run_once
from mailflow.imap import PROCESSED_KEYWORD
from mailflow.mailstack import PASSWORD, MailStack
from mailflow.store.models import OutboxRow, Participant, QuarantinedMessage, Ticket
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail


def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _refuse_subject(app, subject: str) -> None:  # type: ignore[no-untyped-def]
    """A real refusal by the database for one message: a trigger, on either backend."""
    with app.engine.begin() as c:
        if app.engine.dialect.name == "sqlite":
            c.execute(text(
                "CREATE TRIGGER poison BEFORE INSERT ON messages "
                f"WHEN NEW.subject = '{subject}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the poison trigger'); END"))
        else:
            c.execute(text(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.subject = '{subject}' THEN "
                "RAISE EXCEPTION 'refused by the poison trigger'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"))
            c.execute(text("CREATE TRIGGER poison BEFORE INSERT ON messages "
                           "FOR EACH ROW EXECUTE FUNCTION poison()"))


def test_poison_message_is_quarantined_and_the_other_499_are_committed(
        stack: MailStack, db_url: str, make_app) -> None:
    app = make_app(stack, db_url, imap={"batch_size": 500})
    _refuse_subject(app, "poison")
    msgs = [mail(sender=f"c{i}@customers.test", subject=f"normal {i}") for i in range(499)]
    msgs.insert(250, mail(subject="poison"))
    with stack.imap(SUPPORT) as c:
        c.multiappend("INBOX", msgs)

    res = run_once(app)

    assert res.fetched == 500
    assert _count(app, Ticket) == 499
    with app.sessions() as s:
        [q] = s.scalars(select(QuarantinedMessage)).all()
        assert "refused by the poison trigger" in q.reason
        assert b"Subject: poison" in q.raw
    with stack.imap(SUPPORT) as c:
        c.select_folder("INBOX")
        assert len(c.search(["KEYWORD", PROCESSED_KEYWORD.decode()])) == 500
    # No retry loop: the next cycle has nothing to do.
    again = run_once(app)
    assert again.fetched == 0 and _count(app, QuarantinedMessage) == 1
    assert _count(app, OutboxRow) == 499


def test_thousand_character_cc_address_does_not_stop_the_batch(
        stack: MailStack, db_url: str, make_app) -> None:
    """On PostgreSQL this address once rolled back its whole batch, forever."""
    app = make_app(stack, db_url, imap={"batch_size": 500})
    long_addr = "x" * 990 + "@example.test"
    msgs = [mail(subject=f"normal {i}") for i in range(9)]
    msgs.insert(4, mail(subject="long cc", headers={"Cc": long_addr}))
    stack.append(SUPPORT, msgs)

    res = run_once(app)

    assert res.fetched == 10 and _count(app, Ticket) == 10
    with app.sessions() as s:
        addrs = set(s.scalars(select(Participant.address)))
    assert long_addr not in addrs and CUSTOMER in addrs


def test_watcher_survives_a_missing_password_variable(
        stack: MailStack, sqlite_url: str, make_app, monkeypatch,
        caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(stack, sqlite_url)
    monkeypatch.delenv("MAILFLOW_IMAP_PASSWORD")
    [w] = app.watchers()
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="mailflow.imap")
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while "MAILFLOW_IMAP_PASSWORD" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "MAILFLOW_IMAP_PASSWORD" in caplog.text
        assert t.is_alive()
        stack.append(SUPPORT, [mail(subject="waiting for the password")])
        monkeypatch.setenv("MAILFLOW_IMAP_PASSWORD", PASSWORD)
        deadline = time.monotonic() + 20
        while _count(app, Ticket) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _count(app, Ticket) == 1
        assert t.is_alive()
    finally:
        stop.set()
        t.join(15)
    assert not t.is_alive()


@pytest.mark.parametrize("policy", ["import", "skip", "acknowledge"])
def test_first_start_backlog_policy(stack: MailStack, sqlite_url: str, make_app,
                                    policy: str) -> None:
    old = [mail(sender=f"old{i}@customers.test", subject=f"from 2019 #{i}") for i in range(3)]
    stack.append(SUPPORT, old)
    app = make_app(stack, sqlite_url, imap={"backlog": policy})
    first = run_once(app)
    stack.append(SUPPORT, [mail(subject="new after the first start")])
    second = run_once(app)
    with app.sessions() as s:
        subjects = sorted(s.scalars(select(Ticket.subject)))
        acked = sorted(s.scalars(select(Ticket.subject).join(
            OutboxRow, OutboxRow.ticket_id == Ticket.id)))
    with stack.imap(SUPPORT) as c:
        c.select_folder("INBOX")
        marked = len(c.search(["KEYWORD", PROCESSED_KEYWORD.decode()]))
    if policy == "import":
        assert first.fetched == 3 and len(subjects) == 4
        assert acked == ["new after the first start"]
        assert marked == 4
    elif policy == "skip":
        assert first.fetched == 0 and subjects == ["new after the first start"]
        assert acked == subjects and marked == 1  # the old mail is left untouched
    else:
        assert len(subjects) == 4 and len(acked) == 4 and marked == 4
    assert second.fetched == 1


def test_a_log_line_per_ticket_event_worth_knowing(
        stack: MailStack, sqlite_url: str, make_app, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(stack, sqlite_url)
    caplog.set_level(logging.INFO, logger="mailflow.ingest")
    stack.append(SUPPORT, [mail(subject="Website down for all users", sender=CUSTOMER,
                                body="Nobody can log in, everyone is affected.")])
    run_once(app)
    assert f"opened SUP-1 for {CUSTOMER}: severity 1, technical, frontline" in caplog.text
    assert "Nobody can log in" not in caplog.text  # no message text at info
