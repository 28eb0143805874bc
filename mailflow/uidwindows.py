"""New mail searched a window of UIDs at a time.

A backlog of 100,000 mails as one SEARCH answer costs the daemon ~20 MiB that the
allocator keeps (bench/RESULTS.md, memory); windows of a few thousand UIDs, from the
oldest mail in the folder to UIDNEXT, keep every answer small. Mail arriving meanwhile
(UIDNEXT and up) waits for the next cycle, as it always did.
"""

from __future__ import annotations

from collections.abc import Iterator

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError


def uid_windows(lo: int, uidnext: int, window: int) -> Iterator[tuple[int, int]]:
    """``(first, last)`` UID spans covering ``lo`` up to ``uidnext - 1``."""
    while lo < uidnext:
        hi = min(lo + window, uidnext) - 1
        yield lo, hi
        lo = hi + 1


def oldest_uid(client: IMAPClient) -> int:
    """The UID of message 1: a folder whose UIDs start in the millions (mail moved away
    as processed) is not searched window by empty window from UID 1."""
    client.use_uid = False
    try:
        found = client.fetch([1], ["UID"])
    except IMAPClientError:
        return 1  # an empty folder
    finally:
        client.use_uid = True
    return min((int(v[b"UID"]) for v in found.values()), default=1)
