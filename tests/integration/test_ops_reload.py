"""SIGHUP reloads templates as well as rules: a template override added to
``templates_dir`` while the daemon runs is used for the next mail, without a restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from mailflow.mailstack import MailStack
from tests.conftest import CUSTOMER, SUPPORT
from tests.integration.opsproc import Daemon, headers, upgrade, wait_until, write_config
from tests.mails import mail

SHIPPED = Path(__file__).parents[2] / "templates"


def test_sighup_picks_up_a_new_template_override(stack: MailStack, sqlite_url: str,
                                                 tmp_path: Path) -> None:
    overrides = tmp_path / "templates"
    overrides.mkdir()
    cfg = write_config(stack, sqlite_url, tmp_path, f"templates_dir: {overrides}\n")
    upgrade(cfg)
    d = Daemon(cfg, tmp_path / "daemon.log")
    try:
        stack.append(SUPPORT, [mail(subject="Before the reload")])
        assert len(stack.wait_for(CUSTOMER, 1, timeout=30)) == 1
        for part in ("txt", "html"):
            src = (SHIPPED / f"acknowledgment.{part}.j2").read_text()
            (overrides / f"acknowledgment.{part}.j2").write_text(
                src.replace("{% block subject %}Re: ", "{% block subject %}Reloaded: ", 1))
        d.signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP: reloaded rules" in d.text(), 20, what="the reload")
        time.sleep(0.5)  # the sender swaps templates at its next pass
        stack.append(SUPPORT, [mail(subject="After the reload")])
        assert len(stack.wait_for(CUSTOMER, 2, timeout=30)) == 2
    finally:
        assert d.stop() == 0
    subjects = sorted(h["Subject"] for h in headers(stack, CUSTOMER, "Subject"))
    assert subjects[0].startswith("Re: Before the reload"), subjects
    assert subjects[1].startswith("Reloaded: After the reload"), subjects
