"""Two mailflow processes on one SQLite database: the second is refused, clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mailflow.mailstack import PASSWORD, MailStack
from mailflow.runlock import AlreadyRunning, exclusive, lock_path

RULES = Path(__file__).parents[2] / "rules"


def test_lock_path_only_for_sqlite_files(tmp_path: Path) -> None:
    assert lock_path(f"sqlite:///{tmp_path}/m.db") == tmp_path / "m.db.lock"
    assert lock_path("sqlite://") is None and lock_path("sqlite:///:memory:") is None
    assert lock_path("postgresql+psycopg://u@h/db") is None


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    with exclusive(url) as held:
        assert held == tmp_path / "m.db.lock"
        assert held.read_text().strip() == str(os.getpid())
        # flock locks belong to the open file: a second open in this process conflicts too.
        try:
            with exclusive(url):
                raise AssertionError("second lock granted")
        except AlreadyRunning as exc:
            assert f"pid {os.getpid()}" in str(exc) and str(tmp_path / "m.db") in str(exc)
    with exclusive(url):
        pass


def test_second_daemon_run_once_and_db_upgrade_are_refused(stack: MailStack, sqlite_url: str,
                                                tmp_path: Path) -> None:
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(stack.settings_yaml(sqlite_url, f"rules_dir: {RULES}\n"))
    env = dict(os.environ, MAILFLOW_IMAP_PASSWORD=PASSWORD)
    exe = [sys.executable, "-m", "mailflow", "--config", str(cfg)]
    subprocess.run([*exe, "db", "upgrade"], check=True, env=env, capture_output=True)
    log = open(tmp_path / "first.log", "wb")  # noqa: SIM115 - closed below
    first = subprocess.Popen([*exe, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        lock = tmp_path / "mailflow.db.lock"
        # The lock is taken first thing; its file then names the holder.
        while not lock.exists() or lock.read_text().strip() != str(first.pid):
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the first daemon did not start"
            time.sleep(0.1)
        for args in (["run"], ["run", "--once"], ["db", "upgrade"]):
            second = subprocess.run([*exe, *args], env=env, capture_output=True, text=True,
                                    timeout=30)
            assert second.returncode == 1, second.stderr
            assert second.stderr.strip() == (
                f"mailflow: another mailflow (pid {first.pid}) is already running on "
                f"{tmp_path / 'mailflow.db'}: stop it first, or give this one another "
                f"database (lock: {tmp_path / 'mailflow.db.lock'})")
            assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    # Gone with the process that held it: the next run starts.
    again = subprocess.run([*exe, "run", "--once"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stderr
