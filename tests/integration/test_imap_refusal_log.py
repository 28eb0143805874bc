"""The daemon's log line for a refused IMAP login: decoded, naming server and user."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from mailflow.mailstack import MailStack


def test_refused_login_is_logged_decoded_with_the_user(
        stack: MailStack, sqlite_url: str, make_app: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(stack, sqlite_url, imap={"password_env": None, "password": "wrong"})
    w = app.watchers()[0]
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    with caplog.at_level(logging.INFO, logger="mailflow.imap"):
        t.start()
        try:
            for _ in range(200):
                if "cannot log in to IMAP" in caplog.text:
                    break
                stop.wait(0.05)
        finally:
            stop.set()
            t.join(10)
    [line] = [r.getMessage() for r in caplog.records
              if "cannot log in to IMAP" in r.getMessage()][:1]
    assert (f"IMAP 127.0.0.1:{stack.imap_port}: login as support@example.test refused: "
            "[AUTHENTICATIONFAILED]") in line
    assert "b'" not in line and 'b"' not in line
