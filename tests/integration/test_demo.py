"""`mailflow demo`: says which extra a plain install lacks, never leaves Dovecot running
when it fails, and `--keep` keeps both servers running until `--stop`."""

from __future__ import annotations

import re
import shutil
import smtplib
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from imapclient import IMAPClient

from mailflow import demo as demo_mod
from mailflow import stackctl
from mailflow.cli import main
from mailflow.mailstack import PASSWORD
from tests.mails import mail


@pytest.fixture
def where() -> Iterator[Path]:
    """A demo folder outside pytest's tmp dir: Dovecot's auth process (user dovecot)
    cannot read a users file below pytest's mode-700 folders."""
    root = Path(tempfile.mkdtemp(prefix="mailflow-demo-test-"))
    root.chmod(0o755)
    yield root / "d"
    stackctl.stop(root / "d" / "mailstack")
    shutil.rmtree(root, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_plain_install_is_told_which_extra(where: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiosmtpd", None)
    monkeypatch.setitem(sys.modules, "aiosmtpd.controller", None)
    res = CliRunner().invoke(main, ["demo", str(where)])
    assert res.exit_code == 2
    assert res.output.strip() == ("mailflow: mailflow demo needs aiosmtpd for its SMTP "
                                  "server, which is not installed: pip install "
                                  "'mailflow[demo]'")
    assert not (where / "mailstack").exists()  # nothing was started


def test_a_failing_demo_leaves_no_dovecot(where: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def broken_build(settings: Any, *args: Any, **kwargs: Any) -> Any:
        seen["port"] = settings.imap.port
        seen["smtp"] = settings.smtp.port
        assert _listening(settings.imap.port)
        raise RuntimeError("something broke halfway")

    monkeypatch.setattr(demo_mod, "build", broken_build)
    res = CliRunner().invoke(main, ["demo", "--keep", str(where)])
    assert res.exit_code == 1
    assert "something broke halfway" in res.output and "Traceback" not in res.output
    assert not _listening(seen["port"]) and not _listening(seen["smtp"])
    assert not (where / "mailstack" / "run" / "master.pid").exists()


def test_smtp_failing_to_start_stops_dovecot(where: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mailflow.mailstack import MailStack

    ports: list[int] = []

    def no_smtp(self: MailStack) -> None:
        ports.append(self.imap_port)
        raise OSError("address already in use")

    monkeypatch.setattr(MailStack, "start_smtp", no_smtp)
    res = CliRunner().invoke(main, ["demo", str(where)])
    assert res.exit_code == 1
    assert res.output.strip().endswith(
        "mailflow: cannot start the demo mail stack: address already in use")
    assert ports and not _listening(ports[0])


def test_keep_leaves_both_servers_running_until_stop(where: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["demo", "--keep", str(where)])
    assert res.exit_code == 0, res.output
    # The demo shows the whole mission: referral, tier reply, escalation, digest.
    out = res.output
    assert "tier2@example.test: Referral to tier2" in out
    assert "tom.engineer@example.test: Commands:" in out  # the transcript of #accept #eta
    assert "escalation step first-response-missed fired for SUP-1" in out
    assert "helpdesk-lead@example.test: Escalation:" in out
    assert "SUPPORT DIGEST" in out
    line = next(ln for ln in res.output.splitlines() if ln.startswith("mail stack left"))
    imap_port = int(line.split("IMAP 127.0.0.1:")[1].split(",")[0])
    smtp_port = int(line.split("SMTP 127.0.0.1:")[1].split(" ")[0])
    try:
        # The demo's process is gone (CliRunner returned); both still answer, and mail
        # sent over SMTP lands in Dovecot.
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.sendmail("ann@customer.test", ["carol@shop.test"],
                          mail(sender="ann@customer.test", to="carol@shop.test",
                               subject="still there?"))
        with IMAPClient("127.0.0.1", port=imap_port, ssl=False, timeout=10) as imap:
            imap.login("carol@shop.test", PASSWORD)
            imap.select_folder("INBOX")
            assert len(imap.search("ALL")) >= 2  # the acknowledgment and this one
        # A second demo in the same folder replaces the kept one instead of colliding.
        again = runner.invoke(main, ["demo", str(where)])
        assert again.exit_code == 0, again.output
        assert "stopped the mail stack a previous `mailflow demo --keep` left running" \
            in again.output
        # ... and starts from empty mailboxes: it shows the mail it sent, not the first
        # demo's as well.
        def mails(text: str) -> list[str]:
            return [ln for ln in text.splitlines() if re.match(r"   [\w.+-]+@[\w.-]+: ", ln)]
        assert mails(out) and mails(again.output) == mails(out)
        assert not _listening(imap_port) and not _listening(smtp_port)
    finally:
        stopped = runner.invoke(main, ["demo", "--stop", str(where)])
    assert stopped.exit_code == 0
    assert not _listening(imap_port) and not _listening(smtp_port)


def test_demo_below_a_private_folder(where: Path) -> None:
    # Like /root (mode 700): Dovecot's auth process, user dovecot, cannot read its users
    # file below it, so the stack goes to the temporary directory and is cleaned up.
    private = where.parent / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    target = private / "d"
    runner = CliRunner()
    res = runner.invoke(main, ["demo", "--keep", str(target)])
    try:
        assert res.exit_code == 0, res.output
        elsewhere = Path((target / stackctl.POINTER).read_text().strip())
        assert stackctl.running(elsewhere) and not (target / "mailstack").exists()
    finally:
        stopped = runner.invoke(main, ["demo", "--stop", str(target)])
    assert "stopped the demo mail stack" in stopped.output
    assert not elsewhere.exists() and not (target / stackctl.POINTER).exists()
