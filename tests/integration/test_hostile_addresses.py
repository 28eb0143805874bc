"""Issue 10, items 2-4 against Dovecot and the SMTP relay: our mail goes to the sender
and nobody else, internationalised domains arrive as A-labels, and one address the
server cannot take fails alone."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, message_from_string
from email.policy import default
from typing import Any

import pytest
from sqlalchemy import select

from mailflow.daemon import run_once
from mailflow.mailstack import MailStack, free_port
from mailflow.store.models import OutboxRow
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail

VICTIM = "other@example.test"  # a real mailbox on the stack: it must stay empty


def _utf8_mail(sender: str, n: int) -> bytes:
    """RFC 6532 mail: the From header in raw UTF-8, as such senders write it."""
    return (f"From: {sender}\r\nTo: support@example.test\r\nSubject: help\r\n"
            f"Date: Mon, 05 Jan 2026 09:00:00 +0000\r\nMessage-ID: <u{n}@example.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello\r\n").encode()


def _rows(app: Any) -> list[OutboxRow]:
    with app.sessions() as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def test_folded_quoted_local_part_sends_nothing_to_the_victim(stack: MailStack, db_url: str,
                                                              make_app) -> None:
    """Item 2: ``"x\\r\\n <victim>"@mallory.test`` is not the victim."""
    app = make_app(stack, db_url)
    assert stack.relay is not None
    before = len(stack.relay.received)  # the relay's log spans the whole session
    hostile = (b'From: "x\r\n <' + VICTIM.encode() + b'>"@mallory.test\r\n'
               b"To: support@example.test\r\nSubject: please call me\r\n"
               b"Date: Mon, 05 Jan 2026 09:00:00 +0000\r\n"
               b"Message-ID: <fold1@mallory.test>\r\n\r\nHello\r\n")
    stack.append(SUPPORT, [hostile, mail(subject="an honest one")])
    res = run_once(app)
    assert res.outcomes["new"] == 2
    assert all(r.recipient != VICTIM for r in _rows(app))
    assert len(stack.wait_for(CUSTOMER, 1)) == 1  # the honest customer is answered
    time.sleep(0.3)
    assert stack.messages(VICTIM) == []
    assert all(VICTIM not in rcpts for _, rcpts, _ in stack.relay.received[before:])


@contextlib.contextmanager
def _dovecot_user(stack: MailStack, user: str) -> Iterator[None]:
    """A mailbox for an address with an internationalised domain (A-label form)."""
    stack.users.append(user)
    _rewrite_users(stack, lambda: _can_login(stack, user))
    with stack.imap(user) as c:  # empty: an earlier run may have left mail there
        c.select_folder("INBOX")
        uids = c.search("ALL")
        if uids:
            c.delete_messages(uids)
            c.expunge()
    try:
        yield
    finally:
        stack.users.remove(user)
        _rewrite_users(stack, lambda: not _can_login(stack, user))


def _rewrite_users(stack: MailStack, done: Callable[[], bool]) -> None:
    """Dovecot re-reads its passwd-file when the mtime changes (in whole seconds): a
    fresh mtime each try until it has."""
    users = stack.root / "users"
    for step in range(1, 50):
        stack._write_users()
        t = time.time() + step
        os.utime(users, (t, t))
        if done():
            return
        time.sleep(0.1)
    raise AssertionError("Dovecot did not pick up the changed users file")


def _can_login(stack: MailStack, user: str) -> bool:
    try:
        stack.imap(user).logout()
    except Exception:  # noqa: BLE001 - any refusal means "not yet"
        return False
    return True


def test_long_internationalised_domain_arrives_as_a_labels(stack: MailStack, db_url: str,
                                                           make_app) -> None:
    """Item 3: the ack's To: is one ASCII line; the customer really receives it."""
    domain = "\u00e6\u00f8\u00e5" * 15 + ".test"
    ascii_domain = domain.encode("idna").decode()
    local = "rt-" + "x" * 30
    with _dovecot_user(stack, f"{local}@{ascii_domain}"):
        app = make_app(stack, db_url)
        stack.append(SUPPORT, [_utf8_mail(f"Rt <{local}@{domain}>", 1)])
        res = run_once(app)
        assert res.outcomes["new"] == 1 and res.delivery.sent, _rows(app)[0].last_error
        [got] = stack.wait_for(f"{local}@{ascii_domain}", 1)
    head = got.split(b"\r\n\r\n", 1)[0]
    to_lines = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"to:")]
    assert to_lines == [f"To: {local}@{ascii_domain}".encode()]
    m = message_from_bytes(got, policy=default)
    assert [a.addr_spec for a in m["To"].addresses] == [f"{local}@{ascii_domain}"]


@pytest.fixture
def relay_without_smtputf8(stack: MailStack) -> Iterator[int]:
    """The stack's relay (delivering into Dovecot) on a port that offers no SMTPUTF8
    (aiosmtpd's Controller offers it unless told not to)."""
    from aiosmtpd.controller import Controller

    port = free_port()
    ctl = Controller(stack.relay, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False,
                     auth_require_tls=False)
    ctl.start()
    yield port
    ctl.stop()


def test_non_ascii_address_fails_alone_without_smtputf8(stack: MailStack, db_url: str,
                                                        make_app,
                                                        relay_without_smtputf8: int) -> None:
    """Item 4: the server offers no SMTPUTF8; that one row fails for good, the rest go."""
    app = make_app(stack, db_url, smtp={"port": relay_without_smtputf8})
    stack.append(SUPPORT, [_utf8_mail("J <jd\u00f6e@m\u00e4chine.example>", 2),
                           mail(subject="someone else")])
    res = run_once(app)  # raised UnicodeEncodeError and exited before the fix
    assert res.outcomes["new"] == 2
    bad, good = _rows(app)
    assert bad.recipient == "jd\u00f6e@m\u00e4chine.example"
    assert bad.status == "failed" and "SMTPUTF8" in (bad.last_error or "")
    assert good.status == "sent" and len(stack.wait_for(CUSTOMER, 1)) == 1
    assert res.delivery.failed == [bad.id] and res.delivery.sent == [good.id]


class _Recorder:
    """An SMTP server that offers SMTPUTF8 and keeps what it is given."""

    def __init__(self) -> None:
        self.got: list[tuple[str, list[str], list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.got.append((envelope.mail_from, list(envelope.rcpt_tos),
                         list(envelope.mail_options), envelope.original_content))
        return "250 OK"


@pytest.fixture
def smtputf8_server() -> Iterator[tuple[int, _Recorder]]:
    from aiosmtpd.controller import Controller

    rec = _Recorder()
    port = free_port()
    ctl = Controller(rec, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    ctl.start()
    yield port, rec
    ctl.stop()


def test_non_ascii_address_uses_smtputf8_when_offered(stack: MailStack, sqlite_url: str,
                                                      make_app, smtputf8_server) -> None:
    port, rec = smtputf8_server
    app = make_app(stack, sqlite_url, smtp={"port": port})
    stack.append(SUPPORT, [_utf8_mail("J <jd\u00f6e@m\u00e4chine.example>", 3)])
    res = run_once(app)
    assert res.delivery.sent and not res.delivery.failed
    [(_sender, rcpts, options, content)] = rec.got
    assert rcpts == ["jd\u00f6e@xn--mchine-bua.example"]
    assert "SMTPUTF8" in [o.upper() for o in options]
    m = message_from_string(content.decode("utf-8"), policy=default)  # RFC 6532 headers
    assert [a.addr_spec for a in m["To"].addresses] == ["jd\u00f6e@xn--mchine-bua.example"]
