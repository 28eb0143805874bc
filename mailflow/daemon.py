"""The running service: one watcher thread per folder, one sender task, signals.

``run_once`` is burst mode (as arq's): one full cycle of every folder, then every due
mail sent, then return. Tests and ``mailflow run --once`` use it.
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
    result = OnceResult()
    for watcher in app.watchers():
        try:
            res = watcher.cycle()
        finally:
            watcher.close()
        result.fetched += res.fetched
        result.outcomes.update(res.outcomes)
    result.delivery = asyncio.run(app.sender.deliver_due())
    return result


async def _sender_loop(app: App, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Deliver due mail; sleep until woken by new outbox rows or the next retry."""
    while not stop.is_set():
        try:
            await app.sender.deliver_due()
        except Exception:
            log.exception("outbox pass failed; retrying shortly")
        wake.clear()
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
