"""Keep each part of the daemon running: a task or thread that fails is restarted.

A daemon that runs for months meets every failure once: a bug one mailbox triggers,
a database that goes away, a thread killed by an exception nobody expected. Before
this module, such an exception ended its task or watcher thread for good, and intake
stopped without a word. :func:`supervised` runs one concern (a mailbox watcher, the
outbox sender, the escalation scheduler, health) in a loop: it logs the failure with
its traceback and starts the concern again after a back-off with jitter, so several
processes that failed together do not retry in lockstep.

The back-off itself is a pure function (:func:`backoff_delay`) of the number of
failures in a row and a random source, tested without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# A run that lasted this long before failing counts as a fresh start: the next failure
# waits the shortest delay again.
HEALTHY_AFTER = 60.0


def backoff_delay(failures: int, rand: Callable[[], float], initial: float = 1.0,
                  cap: float = 60.0) -> float:
    """Seconds to wait before restart number ``failures`` (1 for the first failure).

    Capped exponential back-off with "equal jitter": half the step is fixed and half is
    random (``rand()`` in [0, 1)), so the delay never collapses to nothing yet two
    daemons that failed at the same moment spread their retries.
    """
    step = min(cap, initial * 2 ** max(0, failures - 1))
    return step / 2 + step / 2 * rand()


async def supervised(name: str, factory: Callable[[], Awaitable[None]],
                     stop: asyncio.Event, *, rand: Callable[[], float] = random.random,
                     initial: float = 1.0, cap: float = 60.0,
                     healthy_after: float = HEALTHY_AFTER,
                     on_failure: Callable[[str, BaseException], None] | None = None) -> None:
    """Run ``factory()`` until ``stop`` is set; restart it when it fails or returns early.

    ``on_failure`` lets health and metrics count restarts. Cancellation (the daemon
    going down hard) is passed on, never swallowed.
    """
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await factory()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if time.monotonic() - started >= healthy_after:
                failures = 0
            failures += 1
            delay = backoff_delay(failures, rand, initial, cap)
            log.error("%s failed (%s: %s); restarting in %.1fs", name, type(exc).__name__,
                      str(exc).splitlines()[0] if str(exc) else "", delay, exc_info=True)
            if on_failure is not None:
                on_failure(name, exc)
        else:
            if stop.is_set():
                return
            failures += 1
            delay = backoff_delay(failures, rand, initial, cap)
            log.error("%s stopped by itself; restarting in %.1fs", name, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)


async def in_thread(name: str, fn: Callable[[], T]) -> T:
    """Run blocking ``fn`` in a thread of its own and await its result.

    Not ``asyncio.to_thread``: a mailbox watcher runs for the life of the daemon and
    would hold one of the default executor's few workers for good. An exception in the
    thread is raised here, so :func:`supervised` sees it and restarts the watcher.
    The thread is a daemon thread: a watcher stuck in a network call cannot keep the
    process from exiting once the daemon has waited for it.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def done(result: T | None, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    def body() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(done, None, exc)
        else:
            loop.call_soon_threadsafe(done, result, None)

    threading.Thread(target=body, name=name, daemon=True).start()
    return await fut
