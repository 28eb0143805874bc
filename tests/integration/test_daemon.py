"""`mailflow run` as a real process: serves mail, reloads on SIGHUP, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mailflow.mailstack import PASSWORD, MailStack
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail

RULES = Path(__file__).parents[2] / "rules"


def test_daemon_end_to_end_with_signals(stack: MailStack, sqlite_url: str,
                                        tmp_path: Path) -> None:
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(stack.settings_yaml(sqlite_url, f"rules_dir: {RULES}\n")
                   .replace("security: none\n", "security: none\n  poll_interval: 1s\n", 1))
    env = dict(os.environ, MAILFLOW_IMAP_PASSWORD=PASSWORD)
    exe = [sys.executable, "-m", "mailflow", "--config", str(cfg)]
    subprocess.run([*exe, "db", "upgrade"], check=True, env=env, capture_output=True)
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*exe, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    helpers: set[int] = set()
    try:
        time.sleep(1.5)
        stack.append(SUPPORT, [mail(subject="Daemon test")])
        got = stack.wait_for(CUSTOMER, 1, timeout=15)
        assert len(got) == 1 and b"[SUP-1]" in got[0]
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        helpers = _descendants(proc.pid)  # the parse worker and its fork server
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in helpers):
            assert time.monotonic() < deadline, "worker processes outlived the daemon"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert "SIGHUP: reloading rules" in text and "stopped" in text
    if (os.cpu_count() or 1) > 1:  # parse_processes: auto
        assert "started 1 parse worker process(es)" in text and helpers
    assert PASSWORD not in text
    assert len(stack.messages(CUSTOMER)) == 1


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            children = (task / "children").read_text().split()
            for c in map(int, children):
                if c not in found:
                    found.add(c)
                    todo.append(c)
    return found
