"""Ingest's pure half (parse, classify, loop check) on another core.

Parsing and rules are CPU work in Python, so a thread would only queue behind the GIL
(tried: no gain). A worker process prepares batch N+1 while the watcher writes batch N,
which is what lets ingest use both cores of a small machine (bench/RESULTS.md).

Nothing here touches the database or the IMAP server, so a worker that dies costs
nothing but time: the batch is prepared again in the caller's thread, the pool is
rebuilt, and the commit-then-mark order in :mod:`mailflow.imap` is unchanged.

The raw bytes travel both ways: unpickling them with the result costs less than
re-attaching the caller's copy (measured: 9 vs 14 us per message).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, tzinfo

from mailflow.classify import RuleSet
from mailflow.lifeline import arm_forkserver, die_with
from mailflow.prepare import Fetched, Prepared, prepare_batch

log = logging.getLogger(__name__)

# Consecutive worker failures after which batches are prepared inline for good.
MAX_FAILURES = 3


def resolve_processes(setting: int | str) -> int:
    """``auto``: one worker when there is a second core (the writer is the other)."""
    if setting == "auto":
        return 1 if (os.cpu_count() or 1) > 1 else 0
    return int(setting)


class PreparePool:
    """Submit a batch, get its :class:`Prepared` list back in the same order.

    With ``processes=0`` the work is done inline at submit time, so callers have one
    code path either way.
    """

    def __init__(self, processes: int, tz: tzinfo, own: frozenset[str]):
        self.processes = processes
        self.tz = tz
        self.own = own
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._rules_blobs: dict[str, bytes] = {}
        self._closed = False
        self.failures = 0  # in a row; a batch prepared by a worker resets it

    def submit(self, batch: Sequence[Fetched], rules: RuleSet,
               now: datetime) -> Future[list[Prepared]]:
        if self.processes > 0 and not self._closed:
            try:
                fut = self._pool().submit(
                    _prepare_remote, [(f.uid, f.raw, f.internaldate) for f in batch],
                    *self._rules(rules), now, self.tz, self.own)
                return fut
            except (BrokenProcessPool, RuntimeError, OSError) as exc:
                self._broken(exc)
        done: _Done = _Done()
        done.set_result(prepare_batch(batch, rules, now, self.tz, self.own))
        return done

    def result(self, fut: Future[list[Prepared]], batch: Sequence[Fetched], rules: RuleSet,
               now: datetime) -> list[Prepared]:
        """The prepared batch; prepared here instead if the worker failed."""
        if isinstance(fut, _Done):
            return fut.result()
        try:
            remote = fut.result()
        except Exception as exc:  # noqa: BLE001 - any worker failure: redo it here
            # A dead worker, a pickling problem, or a bug that the inline run below
            # reproduces with a local traceback.
            self._broken(exc)
            return prepare_batch(batch, rules, now, self.tz, self.own)
        self.failures = 0
        return remote

    def start(self) -> None:
        """Start the workers now rather than on the first batch (the daemon does, so
        the first mail after start-up does not wait for a process to boot)."""
        if self.processes > 0 and not self._closed:
            try:
                self._pool().submit(int).result()  # returns once a worker is up
            except Exception as exc:  # noqa: BLE001 - inline preparing still works
                self._broken(exc)

    def close(self) -> None:
        """Stop the workers; a batch submitted after this is prepared inline."""
        with self._lock:
            self._closed = True
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None

    # -- internals -------------------------------------------------------------------
    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # forkserver: workers are forked from a clean single-threaded server,
                # never from this process, whose IMAP threads make fork() unsafe.
                method = ("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                          else "spawn")
                ctx = multiprocessing.get_context(method)
                if method == "forkserver":
                    # Every process the fork server forks ends with the daemon, also
                    # those of other pools that share it (mailflow.lifeline).
                    arm_forkserver(ctx, ["mailflow.ingest"])
                self._executor = ProcessPoolExecutor(self.processes, mp_context=ctx,
                                                     initializer=_worker_init,
                                                     initargs=(os.getpid(),))
                log.info("started %d parse worker process(es) (%s)", self.processes, method)
            return self._executor

    def _rules(self, rules: RuleSet) -> tuple[str, bytes]:
        # Pickled once per rule-set version and mailbox defaults; the worker unpickles
        # only what it has not seen.
        key = rules.cache_key
        blob = self._rules_blobs.get(key)
        if blob is None:
            if len(self._rules_blobs) > 16:  # versions of rules long replaced
                self._rules_blobs.clear()
            blob = self._rules_blobs[key] = pickle.dumps(rules)
        return key, blob

    def _broken(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
            given_up = self.failures >= MAX_FAILURES and self.processes > 0
            if given_up:
                # Something keeps killing workers (memory limits, a broken install):
                # stop paying a process start per batch and say so once.
                self.processes = 0
        if given_up:
            log.error("parse worker failed %d times in a row (last: %s: %s); parsing in "
                      "the watcher thread from now on (slower, nothing lost). Restart "
                      "mailflow to try worker processes again.", self.failures,
                      type(exc).__name__, exc)
        elif self.processes > 0:
            log.error("parse worker failed (%s: %s); preparing in the watcher thread and "
                      "restarting the worker", type(exc).__name__, exc)


class _Done(Future):
    """A batch prepared inline at submit time."""


# -- in the worker process -------------------------------------------------------------
def _worker_init(daemon_pid: int) -> None:
    # A worker never outlives the daemon, even a SIGKILLed one (mailflow.lifeline).
    die_with(daemon_pid)
    # Ctrl-C in a terminal reaches the whole process group: let the daemon alone decide
    # how to stop (it finishes the batch in hand), instead of the worker dying under it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()  # as the daemon does: the imported modules need no collecting


_worker_rules: dict[str, RuleSet] = {}


def _prepare_remote(items: list[tuple[int, bytes, datetime | None]], key: str,
                    rules_blob: bytes, now: datetime, tz: tzinfo,
                    own: frozenset[str]) -> list[Prepared]:
    rules = _worker_rules.get(key)
    if rules is None:
        if len(_worker_rules) > 16:
            _worker_rules.clear()
        rules = _worker_rules[key] = pickle.loads(rules_blob)
    batch = [Fetched(uid, raw, when) for uid, raw, when in items]
    return prepare_batch(batch, rules, now, tz, own)
