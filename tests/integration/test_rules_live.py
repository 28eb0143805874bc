"""Rule files edited while the daemon runs; the rules CLI on real stored history."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from mailflow.cli import main
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.store.models import Ticket
from tests.conftest import SUPPORT
from tests.mails import mail

SHIPPED = Path(__file__).parents[2] / "rules"


def _severity(app, tid: int) -> int:  # type: ignore[no-untyped-def]
    with app.sessions() as s:
        t = s.get(Ticket, tid)
        assert t is not None
        return t.severity


def _wait_ticket(app, n: int, timeout: float = 8) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.sessions() as s:
            if len(s.scalars(select(Ticket.id)).all()) >= n:
                return
        time.sleep(0.1)
    raise AssertionError(f"ticket {n} not opened")


def test_edit_rules_while_running(stack: MailStack, sqlite_url: str, make_app,
                                  tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED, rules)
    # Through a parse worker: an edited rule set must reach the other process too.
    app = make_app(stack, sqlite_url, rules_dir=str(rules), ingest={"parse_processes": 1})
    w = app.watchers()[0]
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    try:
        stack.append(SUPPORT, [mail(subject="Coffee machine", body="it is empty")])
        _wait_ticket(app, 1)
        assert _severity(app, 1) == 3
        (rules / "coffee.yaml").write_text(
            "rules:\n  - name: coffee\n    when: {subject: coffee}\n    set: {severity: 1}\n")
        stack.append(SUPPORT, [mail(subject="Coffee machine again", body="still empty")])
        _wait_ticket(app, 2)
        assert _severity(app, 2) == 1
        # A broken edit: refused, the last good rules stay in force.
        (rules / "coffee.yaml").write_text(
            "rules:\n  - name: coffee\n    when: {subject: coffee}\n    set: {severity: 7}\n")
        stack.append(SUPPORT, [mail(subject="Coffee machine third time", body="empty")])
        _wait_ticket(app, 3)
        assert _severity(app, 3) == 1
        assert any("severity must be 1, 2 or 3" in e for e in app.rules.last_errors)
        assert app.pool.processes == 1 and app.pool.failures == 0
    finally:
        stop.set()
        t.join(10)


def test_rules_test_and_replay_commands(stack: MailStack, sqlite_url: str, make_app,
                                        tmp_path: Path) -> None:
    app = make_app(stack, sqlite_url)
    stack.append(SUPPORT, [mail(subject="Coffee machine"), mail(subject="Invoice wrong")])
    run_once(app)
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(f"database: {app.settings.database}\nrules_dir: {SHIPPED}\n")
    eml = tmp_path / "m.eml"
    eml.write_bytes(mail(subject="Server down", body="everyone is affected"))
    runner = CliRunner()
    out = runner.invoke(main, ["--config", str(cfg), "rules", "test", str(eml)])
    assert out.exit_code == 0, out.output
    assert "MATCH outage" in out.output and "=> severity 1" in out.output

    candidate = tmp_path / "candidate"
    shutil.copytree(SHIPPED, candidate)
    (candidate / "coffee.yaml").write_text(
        "rules:\n  - name: coffee\n    when: {subject: coffee}\n    set: {severity: 1}\n"
        "  - name: never\n    when: {subject: zebra}\n    set: {severity: 2}\n")
    out = runner.invoke(main, ["--config", str(cfg), "rules", "replay", "--since", "3650d",
                               "--rules", str(candidate)])
    assert out.exit_code == 0, out.output
    assert "replayed 2 ticket(s)" in out.output
    assert "SUP-1" in out.output and "severity 3 -> 1" in out.output
    assert "never   (never matches)" in out.output
    bad = runner.invoke(main, ["--config", str(cfg), "rules", "test", "--rules",
                               str(tmp_path), str(eml)])
    assert bad.exit_code == 2
