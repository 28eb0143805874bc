"""Operational failures become one line with a hint (pure: exceptions in, text out)."""

from __future__ import annotations

import socket
import ssl

import aiosmtplib
import pytest
from imapclient.exceptions import LoginError
from sqlalchemy.exc import OperationalError

from mailflow.config import ConfigError, CredentialError
from mailflow.explain import (
    TLS_NOT_SPOKEN,
    database_problem,
    decode_server_text,
    file_problem,
    imap_problem,
    safe_url,
    smtp_problem,
)


@pytest.mark.parametrize(("raw", "text"), [
    ("b'[AUTHENTICATIONFAILED] Authentication failed.'",
     "[AUTHENTICATIONFAILED] Authentication failed."),
    (b"[UNAVAILABLE] Temporary failure\r\n", "[UNAVAILABLE] Temporary failure"),
    ("plain words", "plain words"),
    ("b'unterminated", "b'unterminated"),
])
def test_server_text_loses_the_bytes_repr(raw: object, text: str) -> None:
    assert decode_server_text(raw) == text


def _imap(exc: BaseException, security: str = "none") -> str:
    return imap_problem(exc, "mail.example", 143, security, "support@example.test", 30)


def test_imap_refused_login_is_decoded_and_names_the_user() -> None:
    exc = LoginError("b'[AUTHENTICATIONFAILED] Authentication failed.'")
    assert _imap(exc) == ("IMAP mail.example:143: login as support@example.test refused: "
                          "[AUTHENTICATIONFAILED] Authentication failed.")


def test_imap_network_hints() -> None:
    wrong = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    assert _imap(wrong, "ssl") == f"IMAP mail.example:143: {TLS_NOT_SPOKEN}"
    assert "try security: starttls or none" in TLS_NOT_SPOKEN
    assert "is the server running" in _imap(ConnectionRefusedError(111, "Connection refused"))
    assert "try security: ssl" in _imap(TimeoutError("timed out"), "starttls")
    assert "within 30s" in _imap(TimeoutError("timed out"), "ssl")
    assert "cannot resolve" in _imap(socket.gaierror(-2, "Name or service not known"))
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed")
    assert "set ca_file" in _imap(cert, "ssl")


def test_missing_credentials_are_named() -> None:
    assert "MAILFLOW_X (password_env) is not set" in _imap(
        ConfigError(["environment variable MAILFLOW_X (password_env) is not set"]))
    assert "password_file /x is empty" in _imap(CredentialError("password_file /x is empty"))


def test_smtp_causes_hidden_by_raise_from_none_are_still_found() -> None:
    def wrapped(inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except Exception:  # noqa: BLE001 - what smtp.py does
                raise RuntimeError("cannot connect") from None
        except RuntimeError as outer:
            return outer

    ssl_err = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    connect = aiosmtplib.SMTPConnectError("Error connecting: [SSL: WRONG_VERSION_NUMBER]")
    connect.__cause__ = ssl_err
    line = smtp_problem(wrapped(connect), "mx", 25, "ssl", "u@x", 30)
    assert line == f"SMTP mx:25: {TLS_NOT_SPOKEN}"
    auth = aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Authentication credentials invalid")
    assert smtp_problem(wrapped(auth), "mx", 587, "starttls", "u@x") == (
        "SMTP mx:587: login as u@x refused: 535 5.7.8 Authentication credentials invalid")
    noauth = aiosmtplib.SMTPException("The SMTP AUTH extension is not supported by this "
                                      "server.")
    assert "offers no login" in smtp_problem(noauth, "mx", 25, "none", "u@x")


def test_database_driver_missing_names_the_extra() -> None:
    exc = ModuleNotFoundError("No module named 'psycopg'", name="psycopg")
    line = database_problem(exc, "postgresql+psycopg://mf:pw@db/mailflow")
    assert line is not None and "install mailflow[postgres]" in line


def test_database_errors_hide_the_password() -> None:
    orig = Exception('connection failed: connection to server at "db", port 5432 failed: '
                     'FATAL:  database "nope" does not exist')
    exc = OperationalError("connect", {}, orig)
    line = database_problem(exc, "postgresql+psycopg://mf:hunter2@db/nope")
    assert line == ('cannot use the database postgresql+psycopg://mf:***@db/nope: connection '
                    'to server at "db", port 5432 failed: database "nope" does not exist')
    assert safe_url("sqlite:////var/x.db") == "sqlite:////var/x.db"
    sqlite = OperationalError("connect", {}, Exception("unable to open database file"))
    assert "does its folder exist" in (database_problem(sqlite, "sqlite:////no/x.db") or "")
    assert database_problem(ValueError("x"), "sqlite://") is None


def test_unreadable_file() -> None:
    exc = PermissionError(13, "Permission denied", "/etc/mailflow/rules/a.yaml")
    assert file_problem(exc) == "/etc/mailflow/rules/a.yaml: Permission denied"
    assert file_problem(ValueError()) is None
