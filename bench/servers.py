"""The benchmarks' mail servers, each in a process of its own (as they would be for a
user: their Python does not share mailflow's GIL): the loopback stack (Dovecot, and an
SMTP server that answers 250 once the mail is in the recipient's INBOX) or a discarding
SMTP sink (``aiosmtpd``, answers 250 and drops the mail)."""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailflow.mailstack import MailStack


class _Sink:
    """aiosmtpd handler that accepts and drops every mail."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK dropped"


def _serve(kind: str, root: str, users: list[str], conn: Connection) -> None:
    # Stopped with SIGTERM too (an interrupted run): Dovecot must not outlive us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if kind == "stack":
        stack = MailStack.create(Path(root), users=users).start()
        try:
            conn.send({"imap": stack.imap_port, "smtp": stack.smtp_port})
            conn.recv()
        finally:
            stack.stop()
    else:
        from aiosmtpd.controller import Controller

        from mailflow.mailstack import free_port

        ctl = Controller(_Sink(), hostname="127.0.0.1", port=free_port())
        ctl.start()
        try:
            conn.send({"smtp": ctl.port})
            conn.recv()
        finally:
            ctl.stop()


@contextmanager
def server(kind: str, root: Path, users: list[str]) -> Iterator[dict[str, int]]:
    ours, theirs = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_serve, args=(kind, str(root), users, theirs))
    proc.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        proc.join(30)


