"""Worker processes end when the daemon does, however it ends (``kill -9`` included).

A worker that outlives the daemon keeps, through the file descriptors it inherited,
the multiprocessing fork server and resource tracker alive too: 100 kills of the daemon
left about 200 processes and 4.5 GB (issue 10, item 6). A graceful stop shuts the
workers down; a SIGKILL runs no code in the daemon at all, so each worker watches the
daemon itself: a thread waits on a pidfd of the daemon (Linux 5.3+; elsewhere it checks
once a second) and ends the worker the moment the daemon is gone. With the worker gone,
the fork server sees its last client end and exits, and so does the resource tracker.

The daemon's fork server is shared by every worker pool (parse, render...), so it is
armed too (:func:`arm_forkserver`): preloaded with this module and told the daemon's pid
through the environment, it starts the same watch in every process it forks, whichever
pool asked for it.

Why not ``PR_SET_PDEATHSIG``: with the ``forkserver`` start method a worker's parent is
the fork server, not the daemon, so the signal would never come; and with ``spawn`` it
fires when the *thread* that started the worker ends, which in a thread pool is any
time, killing healthy workers.
"""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Any

EXIT_ORPHANED = 70  # the worker did not choose to stop
# The pid every process forked by our fork server watches (set by arm_forkserver).
PID_ENV = "MAILFLOW_LIFELINE_PID"


def arm_forkserver(ctx: Any, preload: list[str]) -> None:
    """Call in the daemon before the fork server starts (the first forkserver pool):
    every process the fork server forks then ends with this one."""
    os.environ[PID_ENV] = str(os.getpid())  # the fork server inherits it
    ctx.set_forkserver_preload([__name__, *preload])


def die_with(pid: int) -> None:
    """Call in a worker process: end it as soon as process ``pid`` has ended."""
    if pid == os.getpid():
        return
    threading.Thread(target=_watch, args=(pid,), name="lifeline", daemon=True).start()


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(EXIT_ORPHANED)  # gone already
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        # A pidfd becomes readable when the process has ended.
        while True:
            ready, _, _ = select.select([fd], [], [])
            if ready:
                os._exit(EXIT_ORPHANED)
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            # Gone, or its pid now belongs to a process we may not signal.
            os._exit(EXIT_ORPHANED)


def _in_fork_server() -> None:
    """Imported in the fork server (preloaded): arm every child it forks."""
    pid = os.environ.get(PID_ENV, "")
    if pid.isdigit() and int(pid) != os.getpid() and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: die_with(int(pid)))


_in_fork_server()
