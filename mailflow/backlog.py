"""``imap.backlog``: what the first look at a folder does with the mail already in it.

A first start on a live mailbox must not acknowledge a mail from 2019, so the default
imports old mail as tickets without mailing anyone. The decision is pure (the folder's
size and newest UID in, UIDs and a log line out); the watcher stores it with the first
checkpoint, so a crash half-way through a large backlog does not acknowledge the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Policy = Literal["import", "skip", "acknowledge"]


@dataclass(frozen=True)
class FirstLook:
    backlog_until_uid: int  # imported without customer mail up to here
    skipped_until_uid: int  # left untouched up to here
    message: str | None  # what the log says, None for an empty folder


def first_look(policy: Policy, count: int, newest: int) -> FirstLook:
    if not newest:
        return FirstLook(0, 0, None)
    if policy == "import":
        return FirstLook(newest, 0, f"{count} message(s) already in the folder become "
                                    "tickets without any mail to customers "
                                    "(imap.backlog: import)")
    if policy == "skip":
        return FirstLook(0, newest, f"{count} message(s) already in the folder are left "
                                    f"untouched; starting after UID {newest} "
                                    "(imap.backlog: skip)")
    return FirstLook(0, 0, f"{count} message(s) already in the folder are treated as new "
                           "mail and acknowledged (imap.backlog: acknowledge)")
