"""Issue 10, item 6: ``kill -9`` of the daemon leaves no process behind (parse worker,
forkserver, resource tracker), where each kill used to leave about two for good."""

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


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for c in map(int, children):
                if c not in found:
                    found.add(c)
                    todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def test_sigkill_of_the_daemon_leaves_no_process(stack: MailStack, sqlite_url: str,
                                                 tmp_path: Path) -> None:
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(stack.settings_yaml(
        sqlite_url, f"rules_dir: {RULES}\ningest:\n  parse_processes: 1\n"))
    env = dict(os.environ, MAILFLOW_IMAP_PASSWORD=PASSWORD)
    exe = [sys.executable, "-m", "mailflow", "--config", str(cfg)]
    subprocess.run([*exe, "db", "upgrade"], check=True, env=env, capture_output=True)
    log_path = tmp_path / "daemon.log"
    helpers: set[int] = set()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*exe, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while "started 1 parse worker" not in log_path.read_text() or len(
                    helpers := _descendants(proc.pid)) < 2:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            # Work passes through the worker, so it is a real one, not just started.
            stack.append(SUPPORT, [mail(subject="before the kill")])
            assert len(stack.wait_for(CUSTOMER, 1, timeout=20)) == 1
            helpers |= _descendants(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            deadline = time.monotonic() + 5
            while (left := {p for p in helpers if _alive(p)}):
                if time.monotonic() > deadline:
                    cmdlines = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:120]
                                for p in left if _alive(p)}
                    raise AssertionError(f"still running after kill -9: {cmdlines}")
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for p in helpers:  # never leave the test's own leftovers behind
                if _alive(p):
                    os.kill(p, signal.SIGKILL)
