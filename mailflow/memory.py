"""The daemon's resident memory: fewer malloc arenas.

glibc gives threads that allocate at the same time arenas of their own, up to eight per
core, and memory freed in one arena is not reused by another. The daemon's watcher,
sender, database and scheduler threads each allocate mail-sized buffers, so a backlog of
100,000 mails left ~12 MiB more resident in idle arenas (measured with
``bench/e2e.py --rss``: 150.1 MiB peak with glibc's default, 138.3 MiB with two arenas,
at the same speed: the threads take turns on the GIL anyway).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_ARENA_MAX = -8  # glibc's malloc.h


def fewer_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process, before its threads start. An
    administrator's own ``MALLOC_ARENA_MAX`` wins; other C libraries are left alone.
    True when the cap was set here."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no arenas to cap)
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))
