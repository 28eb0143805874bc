"""Outbox rows to mail bytes on another core, while the sender talks SMTP.

Rendering one acknowledgment costs about 0.2 ms of CPU (Jinja and the MIME bytes,
:mod:`mailflow.mimebytes`; 1.7 ms while the ``email`` package built them). Done in the
sender's event loop, that time sits between every two SMTP round trips; a thread would
only queue behind the GIL. A worker process renders
the next batch while the current one is being sent, so the connections never wait for
it. Nothing here touches the database or SMTP: a worker that dies only costs time (the
batch is rendered inline and the pool is rebuilt), and the caller still stores the bytes
before sending them, so a retry sends the very same bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import inspect

from mailflow.compose import Composer, Envelope, TemplateProblem
from mailflow.config import Settings
from mailflow.lifeline import arm_forkserver, die_with
from mailflow.linking import reply_address
from mailflow.store.models import OutboxRow

log = logging.getLogger(__name__)

# What a render gives back per row: the bytes, or the template problem as text.
Rendered = bytes | str
_COLUMNS = [a.key for a in inspect(OutboxRow).column_attrs if a.key != "raw"]


def render(row: OutboxRow, composer: Composer, settings: Settings, now: datetime) -> bytes:
    """The one place that turns an outbox row into the bytes of its mail."""
    ctx: dict[str, Any] = row.full_context()  # a copy: the pops below leave the row alone
    reply_to = None
    if row.ticket_id is not None and row.reply_token:
        # The address of the ticket's own desk, as the writer put it in the context.
        reply_to = ctx.get("reply_address") or reply_address(
            settings.support_address, row.ticket_id, row.reply_token)
    env = Envelope(
        mail_from=row.mail_from,
        from_name=settings.from_name,
        to=row.recipient,
        message_id=row.message_id,
        date=now,
        reply_to=reply_to,
        in_reply_to=row.in_reply_to,
        references=tuple(r for r in row.references or () if r),
        auto_submitted=row.auto_submitted or "auto-replied",
        extra_headers=(("X-Mailflow-Ticket", ctx.get("ticket", {}).get("ref", "")),)
        if row.ticket_id is not None else (),
    )
    # The customer's originals for a tier group (referral, relay), attached as
    # message/rfc822; they travel in the context as base64 (mailflow.originals).
    originals = [raw for raw in map(_unbase64, ctx.pop("attach_raw", None) or ())
                 if raw is not None]
    return composer.build_bytes(row.template, ctx, env, originals)


def _unbase64(b64: str) -> bytes | None:
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None  # as attach_originals: what does not decode is not attached


def render_rows(rows: list[OutboxRow], composer: Composer, settings: Settings,
                now: datetime) -> list[Rendered]:
    """Render each row; a template problem is returned as its message, not raised."""
    out: list[Rendered] = []
    for row in rows:
        try:
            out.append(render(row, composer, settings, now))
        except TemplateProblem as exc:
            out.append(str(exc))
    return out


class RenderPool:
    """``await pool.render(rows, now)``: in a worker process when ``processes`` > 0,
    else inline (one code path for callers either way)."""

    def __init__(self, settings: Settings, composer: Composer, processes: int):
        self.settings = settings
        self.composer = composer
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Boot the worker now, so the first batch does not wait for it."""
        if self.processes > 0 and not self._closed:
            try:
                self._pool().submit(int).result()
            except Exception as exc:  # noqa: BLE001 - inline rendering still works
                self._broken(exc)

    async def render(self, rows: list[OutboxRow], now: datetime) -> list[Rendered]:
        if not rows:
            return []
        if self.processes > 0 and not self._closed:
            # The worker has no database: each row goes with its whole context.
            data = [{**{k: getattr(r, k) for k in _COLUMNS}, "context": r.full_context(),
                     "shared_context": None} for r in rows]
            try:
                fut = self._pool().submit(_render_remote, data, now)
                return await asyncio.wrap_future(fut)
            except Exception as exc:  # noqa: BLE001 - a dead worker: render here
                self._broken(exc)
        return render_rows(rows, self.composer, self.settings, now)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # As the parse workers: forked from a clean server process, never from
                # this one, whose IMAP threads make fork() unsafe.
                method = ("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                          else "spawn")
                ctx = multiprocessing.get_context(method)
                if method == "forkserver":
                    # This pool may start the shared fork server before the parse pool
                    # does (run --once renders while it ingests): arm it the same way,
                    # so every worker ends with the daemon (mailflow.lifeline).
                    arm_forkserver(ctx, ["mailflow.ingest"])
                self._executor = ProcessPoolExecutor(
                    self.processes, mp_context=ctx, initializer=_worker_init,
                    initargs=(self.settings, os.getpid()))
            return self._executor

    def _broken(self, exc: BaseException) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
        log.error("render worker failed (%s: %s); rendering in the sender and restarting "
                  "the worker", type(exc).__name__, exc)


# -- in the worker process ----------------------------------------------------------------
_worker: tuple[Settings, Composer] | None = None


def _worker_init(settings: Settings, daemon_pid: int) -> None:
    global _worker
    # Never outlives the daemon, even a SIGKILLed one (mailflow.lifeline).
    die_with(daemon_pid)
    # The daemon decides how to stop (it finishes what is in hand), not Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = (settings, Composer(settings.templates_path))


def _render_remote(data: list[dict[str, Any]], now: datetime) -> list[Rendered]:
    assert _worker is not None
    settings, composer = _worker
    return render_rows([OutboxRow(**d) for d in data], composer, settings, now)
