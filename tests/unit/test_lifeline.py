"""A process that called ``die_with(pid)`` ends soon after ``pid`` does (issue 10, 6)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_watcher_ends_when_the_watched_process_ends() -> None:
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    code = ("import sys, time; from mailflow.lifeline import die_with\n"
            f"die_with({watched.pid}); print('ready', flush=True); time.sleep(60)")
    watcher = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert watcher.stdout is not None and watcher.stdout.readline() == b"ready\n"
        time.sleep(0.2)
        assert watcher.poll() is None  # alive while the watched process is
        watched.kill()
        watched.wait()
        assert watcher.wait(timeout=5) == 70
    finally:
        for p in (watched, watcher):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_watching_oneself_does_nothing() -> None:
    import os

    from mailflow.lifeline import die_with

    die_with(os.getpid())  # would end the test run if it watched
    assert _alive(os.getpid())


def test_every_process_of_an_armed_fork_server_ends_with_the_daemon() -> None:
    """A pool that does not call die_with itself (as another pool sharing the fork
    server) still loses its workers when the process that armed the server is killed."""
    code = """
import multiprocessing, os, signal
from concurrent.futures import ProcessPoolExecutor
from mailflow.lifeline import arm_forkserver
ctx = multiprocessing.get_context("forkserver")
arm_forkserver(ctx, [])
pool = ProcessPoolExecutor(1, mp_context=ctx)
print(pool.submit(os.getpid).result(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while _alive(worker):
        assert time.monotonic() < deadline, "the worker outlived the killed process"
        time.sleep(0.05)
