"""The running service: one watcher thread per folder, one sender task, signals.

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


@dataclass
class OnceResult:
    fetched: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)


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

    def shutdown() -> None:
        log.info("shutting down: finishing the current batch")
        stop.set()
        thread_stop.set()
        wake.set()

    def reload_rules() -> None:
        log.info("SIGHUP: reloading rules")
        app.rules.refresh(force=True)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown)
    loop.add_signal_handler(signal.SIGHUP, reload_rules)

    def poke(_n: int) -> None:
        loop.call_soon_threadsafe(wake.set)

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
    await stop.wait()
    for t in threads:
        await asyncio.to_thread(t.join, 30)
    await sender
    log.info("stopped")
