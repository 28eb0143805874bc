"""What ``mailflow check`` checks beyond the files: everything ``run`` would trip over.

A configuration can be valid and still fail at 3 a.m.: a password variable that the
service's environment lacks, a token file the service user cannot read, the PostgreSQL
driver not installed, a database not migrated, a server that speaks TLS on another port.
Each check here returns :class:`Finding` lines, one per thing checked, with a hint where
the cause is a usual one (the wording comes from :mod:`mailflow.explain`).

The credential and database checks never change anything (a missing SQLite file is not
created). The ``--connect`` checks log in for real, select each folder read-only, and
say EHLO (and log in) to the SMTP server, as the daemon will.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailflow.config import ConfigError, CredentialError, ImapSettings, Settings, SmtpSettings
from mailflow.explain import (
    credential_problem,
    database_problem,
    decode_server_text,
    imap_problem,
    safe_url,
    smtp_problem,
)

# Exit codes as the CLI documents them: a finding is either the configuration's fault
# (fix the file or the environment: 2) or the world's (a server, the database: 1).
CONFIG = 2
RUNTIME = 1


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str
    code: int = 0  # the exit code this failure stands for (0 when ok)

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.what}: {self.detail}"


def ok(what: str, detail: str) -> Finding:
    return Finding(what, True, detail)


def bad(what: str, detail: str, code: int = RUNTIME) -> Finding:
    return Finding(what, False, detail, code)


# -- credentials (no network) --------------------------------------------------------------

def credentials(name: str, st: ImapSettings | SmtpSettings,
                environ: Mapping[str, str] | None = None) -> Finding:
    """Is there a password or token to log in with, where the config says it is?

    Never shows the secret: only where it comes from.
    """
    what = f"{name} credentials"
    env = dict(os.environ if environ is None else environ)
    if st.auth == "xoauth2":
        source = f"token_file {st.token_file}" if st.token_file else \
            f"token_command {st.token_command!r}"
        try:
            st.token()
        except CredentialError as exc:
            return bad(what, str(exc), CONFIG)
        return ok(what, f"XOAUTH2 as {st.username}, token from {source}")
    if not st.username:
        if name == "smtp":
            return ok(what, "no login (username not set)")
        return bad(what, "username is not set: IMAP needs a login", CONFIG)
    try:
        secret = st.secret(env)
    except (ConfigError, CredentialError) as exc:
        return bad(what, credential_problem(exc) or str(exc), CONFIG)
    if st.password_env:
        source = f"password from ${st.password_env}"
    elif st.password_file:
        source = f"password from {st.password_file}"
    elif secret:
        source = "password in the config file (password_env or password_file keep it out)"
    else:
        return bad(what, f"no password for {st.username}: set password_env, password_file "
                         "or password", CONFIG)
    return ok(what, f"{st.username}, {source}")


# -- database (no change made) -------------------------------------------------------------

def database(settings: Settings, connect_timeout: int = 5) -> Finding:
    """Driver importable, database reachable, schema current; the SQLite file is not
    created when it is missing (``db upgrade`` does that)."""
    from sqlalchemy.engine import make_url

    from mailflow.store.db import SchemaError, make_engine, require_current

    url = settings.database_url
    shown = safe_url(url)
    what = "database"
    kwargs: dict[str, Any] = {}
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - an unparsable URL is reported, not raised
        return bad(what, database_problem(exc, url) or str(exc), CONFIG)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if db and db != ":memory:" and not db.startswith("file:") and not Path(db).exists():
            folder = Path(db).parent
            if not folder.is_dir():
                return bad(what, f"{shown}: the folder {folder} does not exist", CONFIG)
            return bad(what, f"{shown} does not exist yet: run `mailflow db upgrade`")
    elif parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": connect_timeout}
    try:
        engine = make_engine(url, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a missing driver is the usual cause
        return bad(what, database_problem(exc, url) or str(exc), CONFIG)
    try:
        require_current(engine)
    except SchemaError as exc:
        return bad(what, f"{shown}: {exc}")
    except Exception as exc:  # noqa: BLE001
        return bad(what, database_problem(exc, url) or f"{shown}: {exc}")
    finally:
        engine.dispose()
    return ok(what, f"{shown}: reachable, schema current")


# -- with --connect ---------------------------------------------------------------------

def imap_login(st: ImapSettings, name: str = "imap") -> list[Finding]:
    """Log in as the daemon will, and select each configured folder read-only.
    ``name`` tells the mailboxes apart: ``imap``, ``imap billing``."""
    from imapclient import IMAPClient
    from imapclient.exceptions import IMAPClientError

    timeout = st.timeout.total_seconds()

    def problem(exc: BaseException) -> str:
        return imap_problem(exc, st.host, st.port, st.security, st.username, timeout)

    try:
        context = st.tls_context() if st.security != "none" else None
        client = IMAPClient(st.host, port=st.port, ssl=st.security == "ssl",
                            ssl_context=context if st.security == "ssl" else None,
                            timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every way of not connecting is a finding
        return [bad(f"{name} connect", problem(exc))]
    found: list[Finding] = []
    try:
        if st.security == "starttls":
            client.starttls(context)
        if st.auth == "xoauth2":
            client.oauth2_login(st.username, st.token())
        else:
            client.login(st.username or "", st.secret() or "")
        found.append(ok(f"{name} login", f"{st.host}:{st.port} ({st.security}) as {st.username}"))
        for mb in st.mailboxes():
            try:
                info = client.select_folder(mb.folder, readonly=True)
            except IMAPClientError as exc:
                found.append(bad(f"{name} folder {mb.folder}",
                                 f"cannot be selected: {decode_server_text(exc.args[0])}",
                                 CONFIG))
                continue
            note = f"{int(info.get(b'EXISTS', 0))} message(s)"
            if mb.processed_folder:
                exists = client.folder_exists(mb.processed_folder)
                note += f"; processed mail moves to {mb.processed_folder}" + (
                    "" if exists else " (created at the first run)")
            found.append(ok(f"{name} folder {mb.folder}", note))
    except Exception as exc:  # noqa: BLE001
        found.append(bad(f"{name} login", problem(exc)))
    finally:
        _logout(client)
    return found


def _logout(client: Any) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - closing a refused or dead connection
        with contextlib.suppress(Exception):
            client.shutdown()


def smtp_login(st: SmtpSettings) -> Finding:
    """Connect, EHLO (and STARTTLS, and log in) through the transport the outbox uses."""
    return asyncio.run(_smtp_login(st))


async def _smtp_login(st: SmtpSettings) -> Finding:
    from mailflow.smtp import SmtpTransport

    timeout = st.timeout.total_seconds()
    try:
        async with SmtpTransport(st) as transport:
            assert transport.client is not None
            answer = await transport.client.ehlo()
            banner = answer.message.splitlines()[0] if answer.message else ""
    except Exception as exc:  # noqa: BLE001 - every way of not sending is a finding
        return bad("smtp", smtp_problem(exc, st.host, st.port, st.security, st.username,
                                        timeout))
    login = f"logged in as {st.username}" if st.username else "no login"
    return ok("smtp", f"{st.host}:{st.port} ({st.security}): EHLO answered {banner!r}, "
                      f"{login}")


def run_all(settings: Settings, connect: bool,
            environ: Mapping[str, str] | None = None) -> list[Finding]:
    """Every check, in the order an administrator fixes things."""
    from mailflow.accounts import accounts

    boxes = [(("imap" if a.desk is None else f"imap {a.desk}"), a.imap)
             for a in accounts(settings)]
    found = [*(credentials(name, st, environ) for name, st in boxes),
             credentials("smtp", settings.smtp, environ),
             database(settings)]
    if connect:
        for name, st in boxes:
            found += imap_login(st, name)
        found.append(smtp_login(settings.smtp))
    return found
