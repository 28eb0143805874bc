"""The running service: one watcher thread per folder, a sender and a scheduler task.

``run_once`` is burst mode (as arq's): one full cycle of every folder and every due
mail sent, then return. Tests and ``mailflow run --once`` use it. In both, the sender
runs while the watchers ingest, woken by each batch that queued mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field

from mailflow.app import App
from mailflow.outbox import DeliveryReport

log = logging.getLogger(__name__)

# The scheduler looks at least this often (seconds): tickets that ingest just changed
# have their clocks computed within it even when nothing else is due.
SCHEDULER_IDLE = 5.0


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


def scheduler_pass(app: App) -> int:
    """Ticks until nothing is due now; the number of escalation steps fired."""
    fired = 0
    while True:
        res = app.scheduler.tick(app.clock.now())
        fired += len(res.fired)
        if res.looked < 1000:  # the tick's limit: more may be due
            return fired


async def _scheduler_loop(app: App, wake_sender: asyncio.Event, wake: asyncio.Event,
                          stop: asyncio.Event) -> None:
    """Wake at the next due time (at most every few seconds, so that tickets ingest
    just changed are looked at soon), fire what is due, wake the sender."""
    while not stop.is_set():
        wake.clear()
        try:
            if await asyncio.to_thread(scheduler_pass, app):
                wake_sender.set()
            nxt = await asyncio.to_thread(app.scheduler.next_wake)
        except Exception:
            log.exception("scheduler pass failed; retrying shortly")
            nxt = None
        delay = SCHEDULER_IDLE
        if nxt is not None:
            delay = min(delay, max(0.0, (nxt - app.clock.now()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(delay, 0.05))


async def _sender_loop(app: App, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Deliver due mail; sleep until woken by new outbox rows or the next retry."""
    while not stop.is_set():
        # Cleared before the pass, not after: rows committed during it wake the next.
        wake.clear()
        try:
            await app.sender.deliver_due()
        except Exception:
            log.exception("outbox pass failed; retrying shortly")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=5)


async def serve(app: App) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    wake = asyncio.Event()
    thread_stop = threading.Event()

    wake_scheduler = asyncio.Event()

    def shutdown() -> None:
        log.info("shutting down: finishing the current batch")
        stop.set()
        thread_stop.set()
        wake.set()
        wake_scheduler.set()

    def reload_rules() -> None:
        log.info("SIGHUP: reloading rules")
        app.rules.refresh(force=True)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown)
    loop.add_signal_handler(signal.SIGHUP, reload_rules)

    def poke(_n: int) -> None:
        # A committed batch: mail to send, and tickets whose clocks changed.
        loop.call_soon_threadsafe(wake.set)
        loop.call_soon_threadsafe(wake_scheduler.set)

    await asyncio.to_thread(app.pool.start)
    await asyncio.to_thread(app.sender.start)
    # Everything alive now (modules, SQLAlchemy's metadata, compiled rules) lives as
    # long as the daemon: take it out of the cyclic collector's full passes, which
    # otherwise re-scan it while ingest churns through short-lived objects (+5-10 %
    # ingest throughput, bench/RESULTS.md).
    gc.freeze()
    watchers = app.watchers()
    threads = []
    for w in watchers:
        w.on_outbox = poke
        t = threading.Thread(target=w.run, args=(thread_stop,), name=f"imap:{w.key}",
                             daemon=True)
        t.start()
        threads.append(t)
    log.info("mailflow running: %d folder(s), rules %s", len(watchers),
             app.rules.current.version)
    sender = asyncio.create_task(_sender_loop(app, wake, stop))
    scheduler = asyncio.create_task(_scheduler_loop(app, wake, wake_scheduler, stop))
    await stop.wait()
    for t in threads:
        await asyncio.to_thread(t.join, 30)
    await sender
    await scheduler
    log.info("stopped")
