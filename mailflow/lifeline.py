"""Worker processes end when the daemon does, however it ends (``kill -9`` included).

A worker that outlives the daemon keeps, through the file descriptors it inherited,
the multiprocessing fork server and resource tracker alive too: 100 kills of the daemon
left about 200 processes and 4.5 GB (issue 10, item 6). A graceful stop shuts the
workers down; a SIGKILL runs no code in the daemon at all, so each worker watches the
daemon itself.

With the ``forkserver`` start method a worker's parent is the fork server, not the
daemon, so ``PR_SET_PDEATHSIG`` alone cannot do it: a thread in the worker waits on a
pidfd of the daemon (Linux 5.3+; elsewhere it polls once a second) and ends the worker
the moment the daemon is gone. With the worker gone, the fork server sees its last
client end and exits, and so does the resource tracker.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 70  # EX_SOFTWARE-ish: the worker did not choose to stop


def die_with(pid: int) -> None:
    """Call in a worker process: end it as soon as process ``pid`` has ended."""
    if pid == os.getpid():
        return
    _pdeathsig()
    threading.Thread(target=_watch, args=(pid,), name="lifeline", daemon=True).start()


def _pdeathsig() -> None:
    """Linux: SIGKILL us when our parent dies (the daemon itself, with ``spawn``)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


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
