"""Worker processes end when the daemon does, however it ends (``kill -9`` included).

A worker that outlives the daemon keeps, through the file descriptors it inherited,
the multiprocessing fork server and resource tracker alive too: 100 kills of the daemon
left about 200 processes and 4.5 GB (issue 10, item 6). A graceful stop shuts the
workers down; a SIGKILL runs no code in the daemon at all, so each worker watches the
daemon itself: a thread waits on a pidfd of the daemon (Linux 5.3+; elsewhere it checks
once a second) and ends the worker the moment the daemon is gone. With the worker gone,
the fork server sees its last client end and exits, and so does the resource tracker.

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

EXIT_ORPHANED = 70  # the worker did not choose to stop


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
