"""`mailflow check` finds what `run` would trip over; `--connect` tries the real servers
(wrong port, TLS mismatch, refused logins) and says each on one line with a hint."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mailflow.cli import main
from mailflow.mailstack import PASSWORD, MailStack, free_port
from mailflow.preflight import credentials, database
from tests.conftest import PG_ADMIN_URL, PG_OK, SUPPORT, make_settings

RULES = Path(__file__).parents[2] / "rules"


class _Authenticator:
    """aiosmtpd authenticator: support@example.test with the stack's password."""

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        good = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == SUPPORT
                and auth_data.password.decode() == PASSWORD)
        return AuthResult(success=good, handled=False)  # False: aiosmtpd sends the 535


@pytest.fixture(scope="module")
def login_smtp() -> Iterator[int]:
    """A plain SMTP server on loopback that wants AUTH PLAIN/LOGIN (the test stack's takes
    only XOAUTH2)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, auth_require_tls=False,
                            authenticator=_Authenticator())
    controller.start()
    yield port
    controller.stop()


@pytest.fixture(scope="module")
def tls_stack() -> Iterator[MailStack]:
    stack = MailStack.create(users=[SUPPORT])
    stack.tls = True
    stack.start()
    yield stack
    stack.stop()
    shutil.rmtree(stack.root, ignore_errors=True)


def _config(tmp_path: Path, imap: str, smtp: str) -> Path:
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/m.db\nrules_dir: {RULES}\n"
                   f"support_address: {SUPPORT}\n"
                   f"imap:\n  host: 127.0.0.1\n  username: {SUPPORT}\n"
                   f"  password_env: MAILFLOW_IMAP_PASSWORD\n  timeout: 3s\n{imap}"
                   f"smtp:\n  host: 127.0.0.1\n  timeout: 3s\n{smtp}")
    return cfg


def _check(cfg: Path, *args: str, **env: str) -> Result:
    runner = CliRunner()
    base = {"MAILFLOW_IMAP_PASSWORD": PASSWORD, **env}
    assert runner.invoke(main, ["--config", str(cfg), "db", "upgrade"]).exit_code == 0
    return runner.invoke(main, ["--config", str(cfg), "check", *args], env=base)


def _line(res: Result, start: str) -> str:
    assert "Traceback" not in res.output, res.output
    found = [ln for ln in res.output.splitlines() if ln.startswith(start)]
    assert len(found) == 1, res.output
    return found[0]


def test_connect_all_good(stack: MailStack, login_smtp: int, tmp_path: Path) -> None:
    cfg = _config(tmp_path, f"  port: {stack.imap_port}\n  security: none\n",
                  f"  port: {login_smtp}\n  security: none\n  username: {SUPPORT}\n"
                  "  password_file: smtp.pw\n")
    (tmp_path / "smtp.pw").write_text(PASSWORD + "\n")
    res = _check(cfg, "--connect")
    assert res.exit_code == 0, res.output
    assert _line(res, "ok    imap credentials:") == (
        f"ok    imap credentials: {SUPPORT}, password from $MAILFLOW_IMAP_PASSWORD")
    assert f"password from {tmp_path / 'smtp.pw'}" in _line(res, "ok    smtp credentials:")
    assert "reachable, schema current" in _line(res, "ok    database:")
    assert f"as {SUPPORT}" in _line(res, "ok    imap login:")
    assert "message(s)" in _line(res, "ok    imap folder INBOX:")
    assert f"logged in as {SUPPORT}" in _line(res, "ok    smtp:")
    assert "configuration OK" in res.output and PASSWORD not in res.output


def test_connect_wrong_port_and_refused_logins(stack: MailStack, login_smtp: int,
                                               tmp_path: Path) -> None:
    nothing = free_port()
    cfg = _config(tmp_path, f"  port: {nothing}\n  security: none\n",
                  f"  port: {login_smtp}\n  security: none\n  username: {SUPPORT}\n"
                  "  password: wrong-one\n")
    res = _check(cfg, "--connect")
    assert res.exit_code == 1
    assert _line(res, "FAIL  imap connect:") == (
        f"FAIL  imap connect: IMAP 127.0.0.1:{nothing}: connection refused: is the server "
        "running, and is the port right?")
    assert _line(res, "FAIL  smtp:") == (
        f"FAIL  smtp: SMTP 127.0.0.1:{login_smtp}: login as {SUPPORT} refused: 535 5.7.8 "
        "Authentication credentials invalid")
    cfg = _config(tmp_path, f"  port: {stack.imap_port}\n  security: none\n"
                  "  extra_folders: [{folder: NoSuchFolder}]\n",
                  f"  port: {login_smtp}\n  security: none\n")
    res = _check(cfg, "--connect", MAILFLOW_IMAP_PASSWORD="wrong-password-123")
    assert res.exit_code == 1
    assert _line(res, "FAIL  imap login:") == (
        f"FAIL  imap login: IMAP 127.0.0.1:{stack.imap_port}: login as {SUPPORT} refused: "
        "[AUTHENTICATIONFAILED] Authentication failed.")
    assert "wrong-password-123" not in res.output
    res = _check(cfg, "--connect")
    assert "FAIL  imap folder NoSuchFolder: cannot be selected:" in res.output
    assert res.exit_code == 2  # the folder name is the configuration's fault


def test_connect_tls_mismatch_both_ways(stack: MailStack, tls_stack: MailStack,
                                        tmp_path: Path) -> None:
    # TLS spoken to a plain port: the server answers in clear text.
    cfg = _config(tmp_path, f"  port: {stack.imap_port}\n  security: ssl\n",
                  f"  port: {stack.smtp_port}\n  security: ssl\n")
    res = _check(cfg, "--connect")
    assert res.exit_code == 1
    hint = "the server does not speak TLS here: try security: starttls or none"
    assert _line(res, "FAIL  imap") == (
        f"FAIL  imap connect: IMAP 127.0.0.1:{stack.imap_port}: {hint}")
    assert _line(res, "FAIL  smtp:") == f"FAIL  smtp: SMTP 127.0.0.1:{stack.smtp_port}: {hint}"
    # Clear text spoken to an implicit-TLS port: the server waits for a TLS hello.
    cfg = _config(tmp_path, f"  port: {tls_stack.imaps_port}\n  security: starttls\n",
                  f"  port: {tls_stack.smtps_port}\n  security: none\n")
    res = _check(cfg, "--connect")
    assert res.exit_code == 1
    assert "within 3s: if this port expects TLS from the first byte (993 for IMAP, 465 for " \
           "SMTP), try security: ssl" in _line(res, "FAIL  imap")
    assert "try security: ssl" in _line(res, "FAIL  smtp:")
    # A self-signed certificate without ca_file.
    cfg = _config(tmp_path, f"  port: {tls_stack.imaps_port}\n  security: ssl\n",
                  f"  port: {tls_stack.smtp_port}\n  security: starttls\n")
    res = _check(cfg, "--connect")
    assert "set ca_file" in _line(res, "FAIL  imap") and "set ca_file" in _line(res, "FAIL  smtp")


def test_check_without_connect_finds_missing_secrets_and_schema(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "site")]).exit_code == 0
    cfg = tmp_path / "site" / "mailflow.yaml"
    env = {"MAILFLOW_IMAP_PASSWORD": None, "MAILFLOW_SMTP_PASSWORD": None}
    res = runner.invoke(main, ["--config", str(cfg), "check"], env=env)
    assert res.exit_code == 2
    assert _line(res, "FAIL  imap credentials:") == (
        "FAIL  imap credentials: environment variable MAILFLOW_IMAP_PASSWORD (password_env) "
        "is not set")
    assert "does not exist yet: run `mailflow db upgrade`" in _line(res, "FAIL  database:")
    assert not (tmp_path / "site" / "mailflow.db").exists()  # check creates nothing
    assert runner.invoke(main, ["--config", str(cfg), "db", "upgrade"]).exit_code == 0
    env = {"MAILFLOW_IMAP_PASSWORD": "x", "MAILFLOW_SMTP_PASSWORD": "y"}
    res = runner.invoke(main, ["--config", str(cfg), "check"], env=env)
    assert res.exit_code == 0, res.output
    assert "configuration OK (`mailflow check --connect` tries the servers too)" in res.output


def test_database_driver_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    s = make_settings(None, "postgresql+psycopg://mf:pw@127.0.0.1/x", tmp_path)
    f = database(s)
    assert not f.ok and f.code == 2 and "install mailflow[postgres]" in f.detail


def test_token_and_password_files(tmp_path: Path) -> None:
    s = make_settings(None, "sqlite://", tmp_path,
                      imap={"auth": "xoauth2", "username": SUPPORT,
                            "token_file": str(tmp_path / "none")},
                      smtp={"username": SUPPORT, "password_file": str(tmp_path / "pw")})
    f = credentials("imap", s.imap, {})
    assert not f.ok and f.line().startswith(f"FAIL  imap credentials: cannot read token_file "
                                            f"{tmp_path / 'none'}")
    (tmp_path / "pw").write_text("")
    assert credentials("smtp", s.smtp, {}).detail == f"password_file {tmp_path / 'pw'} is empty"
    (tmp_path / "pw").write_text("p")
    assert credentials("smtp", s.smtp, os.environ).ok


@pytest.mark.skipif(not PG_OK, reason="PostgreSQL not reachable")
def test_database_missing_and_not_migrated(tmp_path: Path) -> None:
    server = PG_ADMIN_URL.rsplit("/", 1)[0]
    f = database(make_settings(None, f"{server}/mailflow_no_such_db", tmp_path))
    assert not f.ok and f.code == 1
    assert 'database "mailflow_no_such_db" does not exist' in f.detail
    sqlite = f"sqlite:///{tmp_path}/empty.db"
    (tmp_path / "empty.db").touch()
    f = database(make_settings(None, sqlite, tmp_path))
    assert not f.ok and "no mailflow schema yet: run `mailflow db upgrade`" in f.detail
