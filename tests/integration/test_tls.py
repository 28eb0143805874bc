"""security: ssl and starttls against a TLS-enabled Dovecot and SMTP server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from mailflow.daemon import run_once
from mailflow.mailstack import PASSWORD, MailStack
from tests.conftest import CUSTOMER, SUPPORT, USERS
from tests.mails import mail


@pytest.fixture(scope="module")
def tls_stack() -> Iterator[MailStack]:
    stack = MailStack.create(users=list(USERS))
    stack.tls = True
    stack.start()
    os.environ["MAILFLOW_IMAP_PASSWORD"] = PASSWORD
    yield stack
    stack.stop()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.mark.parametrize(("imap_sec", "smtp_sec"), [("ssl", "starttls"), ("starttls", "ssl")])
def test_ingest_and_send_over_tls(tls_stack: MailStack, sqlite_url: str, make_app,
                                  imap_sec: str, smtp_sec: str) -> None:
    s = tls_stack
    ca = str(s.cert_file)
    app = make_app(s, sqlite_url,
                   imap={"security": imap_sec, "ca_file": ca,
                         "port": s.imaps_port if imap_sec == "ssl" else s.imap_port},
                   smtp={"security": smtp_sec, "ca_file": ca,
                         "port": s.smtps_port if smtp_sec == "ssl" else s.smtp_port})
    before = len(s.messages(CUSTOMER))
    s.append(SUPPORT, [mail(subject=f"over {imap_sec}/{smtp_sec}")])
    res = run_once(app)
    assert res.outcomes["new"] == 1 and len(res.delivery.sent) == 1
    assert len(s.wait_for(CUSTOMER, before + 1)) == before + 1


def test_untrusted_certificate_is_refused(tls_stack: MailStack, sqlite_url: str,
                                          make_app) -> None:
    import ssl

    s = tls_stack
    app = make_app(s, sqlite_url, imap={"security": "ssl", "port": s.imaps_port})
    with pytest.raises(ssl.SSLError):
        run_once(app)
