"""Operational failures as one line an administrator can act on, never a traceback.

A refused login, a TLS mismatch, a missing database driver or a database that does not
exist are not bugs: they are the configuration meeting the world. Each becomes one
sentence naming what was tried (``IMAP 127.0.0.1:143``, the user, the database with its
password hidden) and, where the cause is a usual one, a hint. Pure functions over
exceptions, shared by the CLI's error handling and by ``mailflow check``.
"""

from __future__ import annotations

import ast
import socket
import ssl
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from mailflow.config import ConfigError, CredentialError

# Database drivers SQLAlchemy imports lazily, and the extra that brings each.
DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres", "psycopg_binary": "postgres"}

TLS_NOT_SPOKEN = "the server does not speak TLS here: try security: starttls or none"


def decode_server_text(value: Any) -> str:
    """The server's words without Python's bytes repr around them.

    imaplib puts the server's reply into the exception as ``str(bytes)``, so a refused
    login reads ``b'[AUTHENTICATIONFAILED] Authentication failed.'``.
    """
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace").strip()
    text = str(value).strip()
    if len(text) >= 3 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        try:
            raw = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(raw, bytes):
            return raw.decode("utf-8", "replace").strip()
    return text


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from or while handling (including
    what ``raise ... from None`` hid from the traceback but kept in ``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first(exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]
           ) -> Any:
    return next((e for e in causes(exc) if isinstance(e, kind)), None)


def network_hint(exc: BaseException, security: str, timeout: float | None = None) -> str | None:
    """What a connection-level failure most likely means, or None if it is not one."""
    ssl_err = _first(exc, ssl.SSLError)
    if ssl_err is not None:
        text = str(ssl_err)
        if "WRONG_VERSION_NUMBER" in text:
            return TLS_NOT_SPOKEN
        if isinstance(ssl_err, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in text:
            why = getattr(ssl_err, "verify_message", None) or text
            return (f"the server's certificate is not trusted ({why}): set ca_file to the "
                    "CA certificate that signed it, or use the host name on the certificate")
        return f"TLS failed: {getattr(ssl_err, 'reason', None) or text}"
    if _first(exc, ConnectionRefusedError) is not None:
        return "connection refused: is the server running, and is the port right?"
    gai = _first(exc, socket.gaierror)
    if gai is not None:
        return f"cannot resolve the host name ({gai.strerror or gai})"
    timed_out = _first(exc, TimeoutError)
    if timed_out is None and any("Timed out" in str(e) or "timed out" in str(e)
                                 for e in causes(exc)):
        timed_out = exc
    if timed_out is not None:
        within = f" within {timeout:.0f}s" if timeout else ""
        if security != "ssl":
            return (f"no greeting from the server{within}: if this port expects TLS from the "
                    "first byte (993 for IMAP, 465 for SMTP), try security: ssl; else check "
                    "host, port and firewall")
        return f"no answer{within}: check host, port and firewall"
    os_err = _first(exc, OSError)
    if os_err is not None and os_err.strerror:
        return os_err.strerror[0].lower() + os_err.strerror[1:]
    return None


def credential_problem(exc: BaseException) -> str | None:
    """No password or token to log in with (a variable unset, a file unreadable)."""
    if isinstance(exc, ConfigError):
        return "; ".join(exc.problems)
    if isinstance(exc, CredentialError):
        return str(exc)
    return None


def imap_problem(exc: BaseException, host: str, port: int, security: str,
                 username: str | None, timeout: float | None = None) -> str:
    """One line for anything that went wrong talking to the IMAP server."""
    from imapclient.exceptions import LoginError

    where = f"IMAP {host}:{port}"
    cred = credential_problem(exc)
    if cred:
        return f"{where}: no credentials to log in as {username}: {cred}"
    if isinstance(exc, LoginError):
        said = decode_server_text(exc.args[0] if exc.args else exc)
        return f"{where}: login as {username} refused: {said}"
    hint = network_hint(exc, security, timeout)
    if hint:
        return f"{where}: {hint}"
    said = decode_server_text(exc.args[0] if exc.args else exc)
    return f"{where}: {said or type(exc).__name__}"


def smtp_problem(exc: BaseException, host: str, port: int, security: str,
                 username: str | None, timeout: float | None = None) -> str:
    """One line for anything that went wrong talking to the SMTP server."""
    import aiosmtplib

    where = f"SMTP {host}:{port}"
    cred = _first(exc, (ConfigError, CredentialError))
    if cred is not None:
        return f"{where}: no credentials to log in as {username}: {credential_problem(cred)}"
    auth = _first(exc, aiosmtplib.SMTPAuthenticationError)
    if auth is not None:
        return f"{where}: login as {username} refused: {auth.code} {auth.message}"
    hint = network_hint(exc, security, timeout)
    if hint:
        return f"{where}: {hint}"
    text = " ".join(str(_first(exc, aiosmtplib.SMTPException) or exc).split())
    if "AUTH extension is not supported" in text:
        return (f"{where}: the server offers no login here (AUTH): try security: starttls "
                "or ssl, or leave out username if it needs no login")
    return f"{where}: {text or type(exc).__name__}"


def safe_url(url: str) -> str:
    """The database URL as it can be shown: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def database_problem(exc: BaseException, url: str) -> str | None:
    """One line for a database that cannot be opened, or None if ``exc`` is not that."""
    missing = _first(exc, ModuleNotFoundError)
    if missing is not None and not isinstance(exc, SQLAlchemyError):
        name = (missing.name or "").split(".")[0]
        extra = DRIVER_EXTRAS.get(name)
        scheme = url.split(":", 1)[0]
        if extra:
            return (f"the database URL ({scheme}) needs the Python package {name}, which is "
                    f"not installed: install mailflow[{extra}] "
                    f"(pip install 'mailflow[{extra}]')")
        if name:
            return f"the database URL ({scheme}) needs the Python package {name}, which is " \
                   "not installed"
    if isinstance(exc, ArgumentError):
        return f"database: not a database URL ({exc})"
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        text = str(orig) if orig is not None else str(exc).split("\n[SQL:")[0]
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        said = " ".join(lines) if lines else type(exc).__name__
        said = said.replace("connection failed: ", "").replace("FATAL:  ", "")
        if url.startswith("sqlite") and "unable to open database file" in said:
            said += " (does its folder exist, and may this user write there?)"
        return f"cannot use the database{' ' + safe_url(url) if url else ''}: {said}"
    return None


def file_problem(exc: BaseException) -> str | None:
    """An unreadable file (a rule file with the wrong owner, a missing template)."""
    if isinstance(exc, OSError) and exc.filename and not isinstance(exc, ssl.SSLError):
        return f"{exc.filename}: {exc.strerror or exc}"
    return None


def is_connect_error(exc: BaseException) -> bool:
    """True when the database could not be reached or logged in to at all, as opposed to
    a statement failing once connected (SQLAlchemy has no statement for the former)."""
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError) and exc.statement is None
