"""Ingest against real Dovecot: nothing lost, nothing twice, threads right."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from mailflow.clock import FrozenClock
from mailflow.daemon import run_once
from mailflow.imap import PROCESSED_KEYWORD
from mailflow.mailstack import MailStack
from mailflow.store.models import OutboxRow, StoredMessage, Ticket
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail, reply_to


def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_crash_between_commit_and_marking_creates_no_duplicate(stack: MailStack, db_url: str,
                                                               make_app, monkeypatch) -> None:
    app = make_app(stack, db_url)
    stack.append(SUPPORT, [mail(subject="one"), mail(subject="two")])
    w = app.watchers()[0]

    def crash(*_a: object) -> None:
        raise SystemExit("power cut after commit, before flagging")

    monkeypatch.setattr(w, "_mark", crash)
    with pytest.raises(SystemExit):
        w.cycle()
    w.close()
    assert _count(app, Ticket) == 2
    with stack.imap(SUPPORT) as c:
        c.select_folder("INBOX")
        assert c.search(["KEYWORD", PROCESSED_KEYWORD.decode()]) == []

    res = run_once(app)  # the restarted daemon
    assert res.fetched == 0
    assert _count(app, Ticket) == 2 and _count(app, OutboxRow) == 2
    with stack.imap(SUPPORT) as c:
        c.select_folder("INBOX")
        assert len(c.search(["KEYWORD", PROCESSED_KEYWORD.decode()])) == 2
    assert len(stack.wait_for(CUSTOMER, 2)) == 2


def test_uidvalidity_change_rescans_without_duplicates(stack: MailStack, sqlite_url: str,
                                                       make_app) -> None:
    app = make_app(stack, sqlite_url, imap={"folder": "Support"})
    msgs = [mail(subject=f"m{i}") for i in range(3)]
    stack.append(SUPPORT, msgs, folder="Support")
    w = app.watchers()[0]
    assert w.cycle().fetched == 3
    w.close()
    # The folder is recreated (a restore, a migration): new UIDVALIDITY, same mail,
    # unflagged, plus one new message.
    with stack.imap(SUPPORT) as c:
        c.delete_folder("Support")
    stack.append(SUPPORT, [*msgs, mail(subject="new one")], folder="Support")
    res = w.cycle()
    w.close()
    assert res.fetched == 4 and res.outcomes["duplicate"] == 3 and res.outcomes["new"] == 1
    assert _count(app, Ticket) == 4


def test_processed_folder_moves_mail(stack: MailStack, sqlite_url: str, make_app) -> None:
    app = make_app(stack, sqlite_url, imap={"processed_folder": "Done"})
    stack.append(SUPPORT, [mail()])
    assert run_once(app).outcomes["new"] == 1
    assert stack.messages(SUPPORT) == []
    assert len(stack.messages(SUPPORT, "Done")) == 1


def test_reply_to_ack_joins_ticket_and_gets_no_new_ack(stack: MailStack, db_url: str,
                                                       make_app) -> None:
    app = make_app(stack, db_url)
    stack.append(SUPPORT, [mail(subject="VPN broken")])
    run_once(app)
    [ack] = stack.wait_for(CUSTOMER, 1)
    # The customer's client drops In-Reply-To but keeps our Reply-To address.
    reply = mail(subject="Re: VPN broken", body="Now it is down for everyone.",
                 to=_reply_to_addr(ack))
    stack.append(SUPPORT, [reply, reply_to(ack, CUSTOMER, "and another thing")])
    res = run_once(app)
    assert res.outcomes["join"] == 2 and not res.delivery.sent
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None and t.severity == 1  # raised by the outage-for-everyone rule
        n = s.scalar(select(func.count()).where(StoredMessage.ticket_id == 1))
    assert n == 3 and _count(app, Ticket) == 1


def _reply_to_addr(raw: bytes) -> str:
    from email import message_from_bytes
    from email.policy import default

    return message_from_bytes(raw, policy=default)["Reply-To"].addresses[0].addr_spec


def test_idle_wakes_on_new_mail_and_reconnects_after_dovecot_restart(
        stack: MailStack, sqlite_url: str, make_app) -> None:
    app = make_app(stack, sqlite_url, FrozenClock())
    w = app.watchers()[0]
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        stack.append(SUPPORT, [mail(subject="first")])
        _wait(lambda: _count(app, Ticket) == 1, 8)
        stack.stop_dovecot()
        time.sleep(0.5)
        stack.start_dovecot()
        stack.append(SUPPORT, [mail(subject="after restart")])
        _wait(lambda: _count(app, Ticket) == 2, 20)
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


def test_backlog_of_10000_messages(stack: MailStack, sqlite_url: str, make_app) -> None:
    app = make_app(stack, sqlite_url, imap={"batch_size": 500})
    with stack.imap(SUPPORT) as c:
        for i in range(0, 10000, 500):
            c.multiappend("INBOX", [mail(subject=f"backlog {j}") for j in range(i, i + 500)])
    w = app.watchers()[0]
    res = w.cycle()
    w.close()
    assert res.fetched == 10000 and res.outcomes["new"] == 10000
    assert _count(app, Ticket) == 10000


def _wait(cond, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def test_extra_folders_each_have_their_own_checkpoint(stack: MailStack, sqlite_url: str,
                                                      make_app) -> None:
    app = make_app(stack, sqlite_url, imap={"extra_folders": [{"folder": "Tier replies"}]})
    stack.append(SUPPORT, [mail(subject="in inbox")])
    stack.append(SUPPORT, [mail(subject="in tier folder")], folder="Tier replies")
    res = run_once(app)
    assert res.outcomes["new"] == 2
    from mailflow.store.models import MailboxCheckpoint

    with app.sessions() as s:
        keys = sorted(s.scalars(select(MailboxCheckpoint.mailbox)))
    assert [k.rsplit("/", 1)[1] for k in keys] == ["INBOX", "Tier replies"]
    assert run_once(app).fetched == 0


def test_mail_marked_by_another_worker_after_search_is_not_ingested_again(
        stack: MailStack, sqlite_url: str, make_app, monkeypatch) -> None:
    app = make_app(stack, sqlite_url)
    stack.append(SUPPORT, [mail(subject="taken by the other worker"), mail(subject="ours")])
    w = app.watchers()[0]
    search = w._unprocessed

    def search_then_other_worker_marks_the_first(client, lo, hi):  # type: ignore[no-untyped-def]
        uids = search(client, lo, hi)
        client.add_flags(min(uids), [PROCESSED_KEYWORD])  # between our SEARCH and FETCH
        return uids

    monkeypatch.setattr(w, "_unprocessed", search_then_other_worker_marks_the_first)
    res = w.cycle()
    w.close()
    assert res.fetched == 1 and res.outcomes["new"] == 1
    with app.sessions() as s:
        assert list(s.scalars(select(Ticket.subject))) == ["ours"]


def test_new_mail_is_searched_a_window_of_uids_at_a_time(stack: MailStack, sqlite_url: str,
                                                         make_app, monkeypatch) -> None:
    """A large backlog is never one SEARCH answer in memory: windows of 10 batches of
    UIDs, gaps (expunged mail) included, and nothing missed."""
    app = make_app(stack, sqlite_url, imap={"batch_size": 3})
    stack.append(SUPPORT, [mail(subject=f"m{i}", sender=f"C{i} <c{i}@example.test>")
                           for i in range(70)])
    with stack.imap(SUPPORT) as c:
        c.select_folder("INBOX")
        uids = sorted(c.search("ALL"))  # the session's stack: UIDs do not start at 1
        c.delete_messages([uids[4], uids[5], uids[6], uids[30]])
        c.expunge()
    w = app.watchers()[0]
    windows: list[tuple[int, int | None]] = []
    search = w._unprocessed

    def spy(client, lo, hi):  # type: ignore[no-untyped-def]
        windows.append((lo, hi))
        return search(client, lo, hi)

    monkeypatch.setattr(w, "_unprocessed", spy)
    res = w.cycle()
    w.close()
    assert res.fetched == 66 and res.outcomes["new"] == 66
    first = uids[0]
    assert windows == [(first, first + 29), (first + 30, first + 59), (first + 60, uids[-1])]
    assert _count(app, Ticket) == 66
