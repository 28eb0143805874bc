"""XOAUTH2 logins (Microsoft 365 and Gmail have no password login any more), checked by
real Dovecot against a token-introspection endpoint, and by the SMTP server."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest
from imapclient.exceptions import LoginError

from mailflow.config import CredentialError
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail


def _oauth(stack: MailStack, **token_source: str) -> dict[str, object]:
    imap = {"auth": "xoauth2", "password_env": None, **token_source}
    smtp = {"auth": "xoauth2", "username": SUPPORT, **token_source}
    return {"imap": imap, "smtp": smtp}


def test_ingest_and_send_with_xoauth2_token_file(stack: MailStack, sqlite_url: str,
                                                 make_app, tmp_path: Path) -> None:
    assert stack.issuer is not None and stack.relay is not None
    token_file = tmp_path / "token"
    token_file.write_text(stack.issuer.issue(SUPPORT) + "\n")
    app = make_app(stack, sqlite_url, **_oauth(stack, token_file=str(token_file)))
    stack.append(SUPPORT, [mail(subject="VPN down")])
    lookups = stack.issuer.lookups

    res = run_once(app)

    assert res.outcomes["new"] == 1 and len(res.delivery.sent) == 1
    assert stack.issuer.lookups > lookups  # Dovecot really asked the token endpoint
    assert ("XOAUTH2", SUPPORT) in stack.relay.logins
    assert len(stack.wait_for(CUSTOMER, 1)) == 1
    log = (stack.root / "log" / "dovecot.log").read_text()
    assert f"Login: user=<{SUPPORT}>, method=XOAUTH2" in log


def test_token_command_is_run_at_every_login_so_rotation_works(
        stack: MailStack, sqlite_url: str, make_app, tmp_path: Path) -> None:
    assert stack.issuer is not None
    current = tmp_path / "current-token"
    old = stack.issuer.issue(SUPPORT)
    current.write_text(old)
    cmd = f"{sys.executable} -c \"print(open('{current}').read())\""
    app = make_app(stack, sqlite_url, imap={"auth": "xoauth2", "password_env": None,
                                            "token_command": cmd})
    w = app.watchers()[0]
    stack.append(SUPPORT, [mail(subject="first")])
    assert w.cycle().fetched == 1
    w.close()
    # The provider expires the old token; the helper now hands out a new one.
    stack.issuer.revoke(old)
    current.write_text(stack.issuer.issue(SUPPORT))
    stack.append(SUPPORT, [mail(subject="second")])
    assert w.cycle().fetched == 1
    w.close()


def test_revoked_token_is_logged_retried_and_recovers_without_leaking_it(
        stack: MailStack, sqlite_url: str, make_app, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    assert stack.issuer is not None
    token_file = tmp_path / "token"
    bad = "revoked-" + stack.issuer.issue(SUPPORT)  # never valid
    token_file.write_text(bad)
    app = make_app(stack, sqlite_url, imap={"auth": "xoauth2", "password_env": None,
                                            "token_file": str(token_file)})
    w = app.watchers()[0]
    with pytest.raises(LoginError):
        w.connect()
    stack.append(SUPPORT, [mail(subject="waiting for a good token")])

    stop = threading.Event()
    monitor = threading.Thread(target=w.run, args=(stop,), daemon=True)
    with caplog.at_level(logging.INFO, logger="mailflow.imap"):
        monitor.start()
        try:
            deadline = threading.Event()
            for _ in range(100):
                if "cannot log in to IMAP" in caplog.text:
                    break
                deadline.wait(0.05)
            assert "cannot log in to IMAP as support@example.test" in caplog.text
            token_file.write_text(stack.issuer.issue(SUPPORT))  # the admin fixes it
            for _ in range(200):  # back-off is 1 s, then 2 s
                if _ingested(app):
                    break
                deadline.wait(0.05)
            assert _ingested(app)
        finally:
            stop.set()
            monitor.join(10)
    assert bad not in caplog.text


def _ingested(app) -> bool:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from mailflow.store.models import Ticket

    with app.sessions() as s:
        return bool(s.scalar(select(func.count()).select_from(Ticket)))


def test_failing_token_command_is_a_clear_credential_error(tmp_path: Path) -> None:
    from mailflow.config import validate

    fail = f"{sys.executable} -c \"import sys; sys.exit('vault sealed')\""
    st = validate({"imap": {"auth": "xoauth2", "username": SUPPORT,
                            "token_command": fail}}).imap
    with pytest.raises(CredentialError, match="exited with status 1: vault sealed"):
        st.token()
    empty = validate({"imap": {"auth": "xoauth2", "username": SUPPORT,
                               "token_file": str(tmp_path / "missing")}}).imap
    with pytest.raises(CredentialError, match="cannot read token_file"):
        empty.token()
    missing_cmd = validate({"imap": {"auth": "xoauth2", "username": SUPPORT,
                                     "token_command": "/nonexistent/helper"}}).imap
    with pytest.raises(CredentialError, match="failed to run"):
        missing_cmd.token()
