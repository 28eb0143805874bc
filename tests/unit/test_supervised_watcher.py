"""A watcher thread that dies is restarted, never lost; the sender's liveness follows
its SMTP connections. Fakes stand in for IMAP and SMTP; the event loop is real."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine

from mailflow.clock import FrozenClock
from mailflow.liveness import PartState
from mailflow.mailboxlock import MailboxLock
from mailflow.smtp import DeliveryError
from mailflow.supervise import supervised
from mailflow.tasks import ObservedSmtp, watch_mailbox

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


class _Watcher:
    """Raises in its thread the first two times, then runs until halted."""

    def __init__(self) -> None:
        self.key = "support@example.test/INBOX"
        self.state = PartState(self.key)
        self.runs: list[str] = []

    def run(self, halt: threading.Event) -> None:
        self.runs.append(threading.current_thread().name)
        if len(self.runs) <= 2:
            raise RuntimeError("a bug one mailbox triggers")
        halt.wait()


def test_a_watcher_thread_that_raises_is_restarted_until_stop() -> None:
    w = _Watcher()
    restarts: list[str] = []
    lock = MailboxLock(create_engine("sqlite://"), w.key)  # SQLite: always ours

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(supervised(
            "mailbox", lambda: watch_mailbox(w, lock, stop), stop, rand=lambda: 0.0,
            initial=0.01, on_failure=lambda n, e: restarts.append(str(e))))
        for _ in range(500):
            if len(w.runs) == 3:
                break
            await asyncio.sleep(0.01)
        assert w.state.view().owned
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(main())
    assert w.runs == ["imap:support@example.test/INBOX"] * 3
    assert restarts == ["a bug one mailbox triggers"] * 2
    assert not w.state.view().owned  # let go once stopped


class _Smtp:
    def __init__(self, connect: Exception | None = None, send: Exception | None = None):
        self.connect, self.fail = connect, send

    async def __aenter__(self) -> _Smtp:
        if self.connect:
            raise self.connect
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def start(self, mail_from: str, recipient: str, raw: bytes) -> None:
        if self.fail:
            raise self.fail

    async def finish(self, recipient: str, raw: bytes) -> str:
        return "250 OK"


def test_observed_smtp_marks_the_sender_failing_and_working() -> None:
    state = PartState("sender")
    clock = FrozenClock(NOW)

    async def main() -> None:
        down = ObservedSmtp(_Smtp(connect=DeliveryError("cannot connect", False)),  # type: ignore[arg-type]
                            state, clock)
        with pytest.raises(DeliveryError):
            async with down:
                pass
        assert state.view().failing_since == NOW and not state.view().connected
        # A permanent refusal of one address says nothing about the server.
        async with ObservedSmtp(_Smtp(send=DeliveryError("550 no such user", True)),  # type: ignore[arg-type]
                                state, clock) as smtp:
            with pytest.raises(DeliveryError):
                await smtp.send("a@x", "b@y", b"")
        assert state.view().failing_since == NOW
        async with ObservedSmtp(_Smtp(), state, clock) as smtp:  # type: ignore[arg-type]
            assert await smtp.send("a@x", "b@y", b"") == "250 OK"
        assert state.view().failing_since is None and state.view().last_success == NOW

    asyncio.run(main())
