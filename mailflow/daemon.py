"""The running service: one watcher thread per folder, a sender and a scheduler task.

``run_once`` is burst mode (as arq's): one full cycle of every folder and every due
mail sent, then return. Tests and ``mailflow run --once`` use it. In both, the sender
runs while the watchers ingest, woken by each batch that queued mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailflow.alerts import Alerter
from mailflow.app import App
from mailflow.compose import Composer
from mailflow.config import ConfigError
from mailflow.health import HealthServer, OutboxFacts, Verdict, outbox_facts, verdict
from mailflow.liveness import Liveness, PartState
from mailflow.mailboxlock import MailboxLock
from mailflow.metrics import Metrics
from mailflow.outbox import DeliveryReport
from mailflow.supervise import supervised
from mailflow.tasks import observe_sender, reload, swap_templates, watch_health, watch_mailbox

log = logging.getLogger(__name__)

# The scheduler looks at least this often (seconds): tickets that ingest just changed
# have their clocks computed within it even when nothing else is due.
SCHEDULER_IDLE = 5.0
# On SIGTERM: how long the watchers (one batch each) and then the sender's pass may take.
SHUTDOWN_GRACE = 30.0
SENDER_GRACE = 10.0


@dataclass
class OnceResult:
    fetched: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    escalations: int = 0  # escalation steps fired


def run_once(app: App) -> OnceResult:
    """One cycle of every folder and every due mail sent, then return.

    Sending overlaps ingest: the sender runs alongside the watchers and is woken by
    each committed batch that queued mail, so the first acknowledgments leave while
    later batches are still being fetched and written. Its last pass starts after the
    last commit, so nothing committed here is left behind.
    """
    return asyncio.run(_once(app))


async def _once(app: App) -> OnceResult:
    result = OnceResult()
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    ingesting = True

    def poke(_n: int) -> None:
        loop.call_soon_threadsafe(wake.set)

    def ingest() -> None:
        for watcher in app.watchers():
            watcher.on_outbox = poke
            try:
                res = watcher.cycle()
            finally:
                watcher.close()
            result.fetched += res.fetched
            result.outcomes.update(res.outcomes)
        # Then every clock and escalation step due now, before the sender's last pass.
        result.escalations += scheduler_pass(app)
        poke(0)

    async def send() -> None:
        while True:
            wake.clear()
            last = not ingesting  # read before the pass: it sees every commit before it
            result.delivery.add(await app.sender.deliver_due())
            if last:
                return
            await wake.wait()

    starting = asyncio.create_task(asyncio.to_thread(app.sender.start))
    sender = asyncio.create_task(send())
    try:
        await asyncio.to_thread(ingest)
    finally:
        # Also after an IMAP failure: what was committed is still sent.
        ingesting = False
        wake.set()
        await starting
        await sender
    return result


def digest_pass(app: App) -> int:
    """Queue the daily digest when its time has come (also after downtime); once per day
    and recipient, whatever restarts or second workers do (the outbox's unique key)."""
    from mailflow.digest.schedule import due_digest_day
    from mailflow.digest.send import last_digest_day, queue_digest

    st = app.settings
    if not st.digest.recipients:
        return 0
    now = app.clock.now()
    day = due_digest_day(now, st.digest.at, st.tz, last_digest_day(app.sessions))
    if day is None:
        return 0
    queued = queue_digest(app.sessions, st, day, now)
    if queued:
        log.info("digest %s queued to %d recipient(s)", day.isoformat(), queued)
    return queued


# The daemon purges raw mail of long-closed tickets at most this often (retention).
RETENTION_EVERY = timedelta(hours=24)
_last_retention: dict[int, datetime] = {}


def retention_pass(app: App) -> int:
    """``retention.raw_days``: drop the raw bytes of tickets closed longer ago, once a
    day (a restart runs it once more; it only touches what is still there)."""
    days = app.settings.retention.raw_days
    if days is None:
        return 0
    now = app.clock.now()
    last = _last_retention.get(id(app))
    if last is not None and now - last < RETENTION_EVERY:
        return 0
    from mailflow.retention import purge_raw

    _last_retention[id(app)] = now
    report = purge_raw(app.sessions, now, days)
    if report.messages or report.outbox:
        log.info("retention: raw bytes of %d message(s) and %d sent mail(s) of tickets "
                 "closed over %d day(s) ago removed", report.messages, report.outbox, days)
    return report.messages


def scheduler_pass(app: App) -> int:
    """Ticks until nothing is due now, then the digest if its time has come; the
    number of escalation steps fired and digests queued."""
    fired = digest_pass(app)
    retention_pass(app)
    while True:
        res = app.scheduler.tick(app.clock.now())
        fired += len(res.fired)
        if res.looked < 1000:  # the tick's limit: more may be due
            return fired


async def _scheduler_loop(app: App, wake_sender: asyncio.Event, wake: asyncio.Event,
                          stop: asyncio.Event,
                          on_fired: Callable[[int], None] | None = None) -> None:
    """Wake at the next due time (at most every few seconds, so that tickets ingest
    just changed are looked at soon), fire what is due, wake the sender."""
    while not stop.is_set():
        wake.clear()
        try:
            fired = await asyncio.to_thread(scheduler_pass, app)
            if fired:
                wake_sender.set()
                if on_fired is not None:
                    on_fired(fired)
            nxt = await asyncio.to_thread(app.scheduler.next_wake)
        except Exception:
            log.exception("scheduler pass failed; retrying shortly")
            nxt = None
        delay = SCHEDULER_IDLE
        if nxt is not None:
            delay = min(delay, max(0.0, (nxt - app.clock.now()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(delay, 0.05))


@dataclass
class _Templates:
    """A Composer SIGHUP built, waiting for the sender to be between two passes."""

    pending: Composer | None = None


async def _sender_loop(app: App, wake: asyncio.Event, stop: asyncio.Event,
                       templates: _Templates | None = None) -> None:
    """Deliver due mail; sleep until woken by new outbox rows or the next retry."""
    while not stop.is_set():
        # Cleared before the pass, not after: rows committed during it wake the next.
        wake.clear()
        if templates is not None and templates.pending is not None:
            composer, templates.pending = templates.pending, None
            await asyncio.to_thread(swap_templates, app, composer)
        try:
            await app.sender.deliver_due()
        except Exception:
            log.exception("outbox pass failed; retrying shortly")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=5)


async def serve(app: App) -> None:
    """The daemon: one task per concern, each supervised (a failure is logged and the
    concern restarted with back-off); SIGTERM/SIGINT finish the batch in hand and
    return, SIGHUP reloads rules and templates."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    wake = asyncio.Event()
    wake_scheduler = asyncio.Event()
    live = Liveness(app.clock.now())
    metrics = Metrics()
    templates = _Templates()

    def shutdown() -> None:
        log.info("shutting down: finishing the current batch")
        app.sender.stopping = True  # sends what it claimed, claims nothing more
        stop.set()
        wake.set()
        wake_scheduler.set()

    def on_hup() -> None:
        log.info("SIGHUP: reloading rules and templates")
        try:
            templates.pending = reload(app)
        except Exception:
            log.exception("SIGHUP: reload failed; what was loaded stays in force")
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown)
    loop.add_signal_handler(signal.SIGHUP, on_hup)

    def poke(_n: int) -> None:
        # A committed batch: mail to send, and tickets whose clocks changed.
        loop.call_soon_threadsafe(wake.set)
        loop.call_soon_threadsafe(wake_scheduler.set)

    await asyncio.to_thread(app.pool.start)
    await asyncio.to_thread(app.sender.start)
    observe_sender(app, live.sender)
    app.sender.on_result = metrics.on_mail
    server = _listen(app, live, metrics)
    # Everything alive now (modules, SQLAlchemy's metadata, compiled rules) lives as
    # long as the daemon: take it out of the cyclic collector's full passes, which
    # otherwise re-scan it while ingest churns through short-lived objects (+5-10 %
    # ingest throughput, bench/RESULTS.md).
    gc.freeze()

    def restarted(state: PartState | None) -> Callable[[str, BaseException], None]:
        def note(name: str, exc: BaseException) -> None:
            metrics.on_restart(name, exc)
            if state is not None:
                state.restarted()
        return note

    tasks = []
    watchers = app.watchers()
    for w in watchers:
        w.on_outbox = poke
        w.on_batch = metrics.on_batch
        live.mailboxes[w.key] = w.state
        lock = MailboxLock(app.engine, w.key)
        tasks.append(asyncio.create_task(supervised(
            f"mailbox {w.key}", functools.partial(watch_mailbox, w, lock, stop), stop,
            on_failure=restarted(w.state))))
    log.info("mailflow running: %d folder(s), rules %s", len(watchers),
             app.rules.current.version)
    sender = asyncio.create_task(supervised(
        "outbox sender", lambda: _sender_loop(app, wake, stop, templates), stop,
        on_failure=restarted(live.sender)))
    tasks.append(asyncio.create_task(supervised(
        "escalation scheduler",
        lambda: _scheduler_loop(app, wake, wake_scheduler, stop, metrics.escalations.inc),
        stop, on_failure=restarted(None))))
    alerter = Alerter(app.settings, app.sessions)
    tasks.append(asyncio.create_task(supervised(
        "health", lambda: watch_health(app, live, alerter, stop), stop,
        on_failure=restarted(None))))
    await stop.wait()
    # Watchers finish their batch in hand (one batch each); the sender the mail it had
    # claimed (two batches a connection at most). Past the grace period the sender is
    # cancelled: what it had not started goes back to the queue, a mail in flight
    # waits for its lease.
    await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
    try:
        await asyncio.wait_for(sender, timeout=SENDER_GRACE)
    except TimeoutError:
        log.warning("outbox pass still running after %.0fs; stopped", SENDER_GRACE)
    for t in tasks:
        t.cancel()
    if server is not None:
        server.close()
    log.info("stopped")


def _listen(app: App, live: Liveness, metrics: Metrics) -> HealthServer | None:
    """The HTTP listener for /healthz and /metrics, when ``metrics.listen`` is set."""
    listen = app.settings.metrics.listen
    if not listen:
        return None
    after = app.settings.alerts.after

    def facts() -> OutboxFacts | None:
        try:
            return outbox_facts(app.sessions, app.clock.now())
        except Exception as exc:  # noqa: BLE001 - health says the database is down
            log.warning("health: database not answering: %s", exc)
            return None

    def outbox_depth() -> tuple[dict[str, int], float | None]:
        f = outbox_facts(app.sessions, app.clock.now())
        age = None if f.oldest_due is None else \
            (app.clock.now() - f.oldest_due).total_seconds()
        return f.depth, age

    def health() -> Verdict:
        return verdict(live.views(), facts(), app.clock.now(), after)

    def scrape() -> bytes:
        metrics.refresh(live)
        return metrics.exposition()

    metrics.watch_outbox(outbox_depth)
    try:
        server = HealthServer(listen, health, scrape)
    except OSError as exc:  # the port is taken, or not an address of this machine
        raise ConfigError([f"metrics.listen: cannot listen on {listen}: "
                           f"{exc.strerror or exc}"]) from None
    server.start()
    return server
