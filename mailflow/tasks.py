"""The daemon's long-running concerns besides sending and scheduling: each mailbox
(owned through its lock, watched in a thread), health and alerts, and SIGHUP's reload.

:func:`mailflow.daemon.serve` runs each of these under
:func:`mailflow.supervise.supervised`; here they only do their one job and raise
when they cannot, so the supervisor logs and restarts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from typing import Any

from mailflow.alerts import Alerter
from mailflow.app import App
from mailflow.clock import Clock
from mailflow.compose import Composer
from mailflow.imap import MailboxWatcher
from mailflow.liveness import Liveness, PartState
from mailflow.mailboxlock import RETRY_SECONDS, MailboxLock
from mailflow.renderpool import RenderPool
from mailflow.smtp import DeliveryError, SmtpTransport
from mailflow.supervise import in_thread

log = logging.getLogger(__name__)

# How often the lock of an owned mailbox is checked, and alerts are looked at (seconds).
LOCK_CHECK_SECONDS = 2.0
ALERT_CHECK_SECONDS = 1.0


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def watch_mailbox(w: MailboxWatcher, lock: MailboxLock, stop: asyncio.Event) -> None:
    """Own the mailbox, then run its watcher in a thread until stop or the lock is lost.

    The watcher stops between two batches (a batch in hand is committed and marked), and
    only then is the lock let go: the next owner never sees a half-marked batch.
    """
    standing_by = False
    while not stop.is_set():
        if not await asyncio.to_thread(lock.acquire):
            w.state.owned(False)
            if not standing_by:
                log.info("%s: another mailflow process owns this mailbox; standing by",
                         w.key)
                standing_by = True
            await _sleep(stop, RETRY_SECONDS)
            continue
        w.state.owned(True)
        if lock.shared:
            log.info("%s: this process owns the mailbox now", w.key)
        standing_by = False
        halt = threading.Event()
        running = asyncio.ensure_future(in_thread(f"imap:{w.key}", functools.partial(w.run, halt)))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not running.done():
                await asyncio.wait({running, stopping}, timeout=LOCK_CHECK_SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set() or not await asyncio.to_thread(lock.alive):
                    break
        finally:
            stopping.cancel()
            halt.set()
            try:
                await running  # the batch in hand is finished; a failure is raised here
            finally:
                await asyncio.to_thread(lock.release)
                w.state.owned(False)


async def watch_health(app: App, live: Liveness, alerter: Alerter,
                       stop: asyncio.Event) -> None:
    """Look at every part once a second; report what is down (or back) to the
    administrator."""
    while not stop.is_set():
        views = live.views()
        await asyncio.to_thread(alerter.check, views, app.clock.now())
        await _sleep(stop, ALERT_CHECK_SECONDS)


def reload(app: App) -> Composer:
    """SIGHUP: rules and SLA policies reload in place; the templates come back as a new
    Composer for :func:`swap_templates`.

    A new Composer, not Jinja's per-file auto-reload: a template file added to
    ``templates_dir`` must win over the shipped one of the same name, which auto-reload
    would not notice. A broken template is reported by ``mailflow check`` and, at send
    time, by the outbox (that row waits); it never stops the daemon.
    """
    app.rules.refresh(force=True)
    try:
        app.scheduler.policies.refresh()
    except Exception as exc:  # noqa: BLE001 - the policies in force stay; said once
        log.error("SIGHUP: SLA policies not reloaded: %s", exc)
    composer = Composer(app.settings.templates_path)
    log.info("SIGHUP: reloaded rules %s; templates from %s take effect with the next "
             "outbox pass", app.rules.current.version, app.settings.templates_path)
    return composer


def swap_templates(app: App, composer: Composer) -> None:
    """Between two outbox passes (no render in flight): the new Composer, and a new
    render worker built from it; the old worker is closed."""
    app.composer = composer
    sender = app.sender
    sender.composer = composer
    old = sender.renderer
    sender.renderer = RenderPool(app.settings, composer, old.processes)
    old.close()
    sender.renderer.start()


class ObservedSmtp:
    """An SMTP transport that tells the sender's liveness how it went.

    Wrapped around the outbox's transport factory by the daemon: a connection or login
    that fails, or a temporary refusal, counts as the sender failing; a 250 as it
    working. A permanent refusal of one address says nothing about the server.
    """

    def __init__(self, inner: SmtpTransport, state: PartState, clock: Clock):
        self.inner = inner
        self.state = state
        self.clock = clock

    async def __aenter__(self) -> ObservedSmtp:
        try:
            await self.inner.__aenter__()
        except DeliveryError as exc:
            self.state.connected(False)
            self.state.failed(str(exc), self.clock.now())
            raise
        self.state.connected(True)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.state.connected(False)
        await self.inner.__aexit__(*exc)

    async def send(self, mail_from: str, recipient: str, raw: bytes) -> str:
        await self.start(mail_from, recipient, raw)
        return await self.finish(recipient, raw)

    async def start(self, mail_from: str, recipient: str, raw: bytes) -> None:
        """MAIL and RCPT (the outbox sends DATA once the previous mail is marked)."""
        try:
            await self.inner.start(mail_from, recipient, raw)
        except DeliveryError as exc:
            self._failed(exc)
            raise

    async def finish(self, recipient: str, raw: bytes) -> str:
        try:
            answer = await self.inner.finish(recipient, raw)
        except DeliveryError as exc:
            self._failed(exc)
            raise
        self.state.succeeded(self.clock.now())
        return answer

    def _failed(self, exc: DeliveryError) -> None:
        if not exc.permanent:
            self.state.failed(str(exc), self.clock.now())


def observe_sender(app: App, state: PartState) -> None:
    """Route the outbox's SMTP connections through :class:`ObservedSmtp`."""
    inner = app.sender.transport
    app.sender.transport = lambda: ObservedSmtp(inner(), state, app.clock)  # type: ignore[assignment,return-value]
