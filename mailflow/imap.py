"""One IMAP folder, watched: fetch new mail in batches, hand it to ingest, mark it done.

imapclient is blocking, so a watcher runs in its own thread (the daemon starts one per
folder). The order of effects is the whole point of this module:

1. fetch a batch (``BODY.PEEK[]``: nothing changes on the server);
2. ingest commits tickets, events, outbox rows *and the checkpoint* together;
3. only then mark the batch processed (MOVE to ``processed_folder``, or ``\\Seen`` plus
   the ``$MailflowProcessed`` keyword).

A crash between 2 and 3 leaves unmarked mail whose UIDs are at or below the
checkpoint: the next cycle marks those without ingesting them again.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from sqlalchemy.exc import SQLAlchemyError

from mailflow.accounts import DeskRules
from mailflow.backlog import first_look
from mailflow.classify import RuleSet
from mailflow.classify.reloader import RulesHolder
from mailflow.clock import Clock
from mailflow.config import ConfigError, CredentialError, ImapSettings, MailboxSettings
from mailflow.explain import imap_problem
from mailflow.ingest import Fetched, Ingestor, Prepared
from mailflow.liveness import PartState
from mailflow.preparepool import PreparePool
from mailflow.store.db import transaction
from mailflow.store.models import MailboxCheckpoint
from mailflow.uidwindows import oldest_uid, uid_windows

log = logging.getLogger(__name__)

PROCESSED_KEYWORD = b"$MailflowProcessed"
# RFC 2177: servers may drop an IDLE after 30 minutes; re-issue well before.
IDLE_RENEW_SECONDS = 29 * 60
NETWORK_ERRORS = (OSError, socket.error, IMAPClientError, ssl.SSLError, EOFError)


@dataclass
class CycleResult:
    fetched: int = 0
    marked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    new_outbox: int = 0


@dataclass
class _InFlight:
    batch: list[Fetched]
    rules: RuleSet
    now: datetime
    future: Future[list[Prepared]]


def backoff_delays(initial: float = 1.0, cap: float = 60.0) -> Iterator[float]:
    delay = initial
    while True:
        yield delay
        delay = min(cap, delay * 2)


class MailboxWatcher:
    def __init__(self, imap: ImapSettings, mailbox: MailboxSettings, ingestor: Ingestor,
                 rules: RulesHolder | DeskRules, clock: Clock,
                 on_outbox: Callable[[int], None] | None = None,
                 pool: PreparePool | None = None, key: str | None = None):
        self.imap = imap
        self.mailbox = mailbox
        self.ingestor = ingestor
        self.rules = rules
        self.clock = clock
        self.on_outbox = on_outbox
        self.pool = pool or PreparePool(0, ingestor.settings.tz, ingestor.own)
        self.client: IMAPClient | None = None
        # Called after each committed batch with its outcomes, the batch's arrival
        # times (INTERNALDATE) and the commit time: metrics.
        self.on_batch: Callable[[Counter[str], list[datetime | None], datetime], None] \
            | None = None
        # Set by ``run``: a stop request ends a cycle between two batches.
        self._stop: threading.Event | None = None
        # The account and folder, not the server's name: a new host name or port for the
        # same mailbox must not make it look new (UIDVALIDITY guards a real change).
        # Further mailboxes (``mailboxes:``) pass a key that names their desk.
        self.key = key or f"{imap.username or ''}/{mailbox.folder}"
        # Connected, last good cycle, last error: read by health and alerts.
        self.state = PartState(self.key)

    # -- connection ---------------------------------------------------------------------
    def connect(self) -> IMAPClient:
        st = self.imap
        context = st.tls_context()
        client = IMAPClient(st.host, port=st.port, ssl=st.security == "ssl",
                            ssl_context=context if st.security == "ssl" else None,
                            timeout=st.timeout.total_seconds())
        try:
            if st.security == "starttls":
                client.starttls(context)
            if st.auth == "xoauth2":
                client.oauth2_login(st.username, st.token())
            else:
                client.login(st.username or "", st.secret() or "")
            client.normalise_times = False  # aware INTERNALDATEs, not local naive ones
            mb = self.mailbox
            if mb.processed_folder and not client.folder_exists(mb.processed_folder):
                client.create_folder(mb.processed_folder)
        except BaseException:
            _close(client)
            raise
        self.client = client
        self.state.connected(True)
        log.info("connected to IMAP %s:%s as %s, folder %s", st.host, st.port, st.username,
                 self.mailbox.folder)
        return client

    def close(self) -> None:
        if self.client is not None:
            _close(self.client)
            self.client = None
        self.state.connected(False)

    # -- one cycle -------------------------------------------------------------------------
    def cycle(self) -> CycleResult:
        """Process everything waiting in the folder now; return what happened."""
        client = self.client or self.connect()
        info = client.select_folder(self.mailbox.folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        result = CycleResult()
        last_uid, backlog, skipped = self._checkpoint(client, uidvalidity, info)
        # Committed before a crash but never marked: mark now, ingest nothing.
        leftover = self._unprocessed(client, skipped + 1, last_uid) if last_uid > skipped \
            else []
        if leftover:
            log.warning("%s: %d message(s) were committed but not marked processed "
                        "(crash or lost connection); marking them now", self.key, len(leftover))
            self._mark(client, leftover)
            result.marked += len(leftover)
        # Pipelined: batch N+1 is parsed (in a worker process) while batch N is written;
        # with k workers, k batches are ahead. Commits and marks still happen strictly in
        # UID order, one batch at a time, in this thread.
        inflight: deque[_InFlight] = deque()
        for uids in self._fresh(client, max(last_uid, skipped) + 1,
                                int(info.get(b"UIDNEXT") or 0)):
            if self._stop is not None and self._stop.is_set():
                break  # shutting down: finish what is in hand, leave the rest
            batch = self._fetch(client, uids)
            self.rules.refresh()
            rules, now = self.rules.current, self.clock.now()
            inflight.append(_InFlight(batch, rules, now,
                                      self.pool.submit(batch, rules, now)))
            if len(inflight) > max(1, self.pool.processes):
                self._commit(client, uidvalidity, inflight.popleft(), result, backlog)
        while inflight:
            self._commit(client, uidvalidity, inflight.popleft(), result, backlog)
        return result

    def _commit(self, client: IMAPClient, uidvalidity: int, job: _InFlight,
                result: CycleResult, backlog: int = 0) -> None:
        prepared = self.pool.result(job.future, job.batch, job.rules, job.now)
        res = self.ingestor.commit(self.key, uidvalidity, prepared, job.now, backlog,
                                   self.mailbox.role)
        result.fetched += len(job.batch)
        result.outcomes.update(res.outcomes)
        result.new_outbox += res.new_outbox
        if self.on_batch is not None:
            self.on_batch(res.outcomes, [f.internaldate for f in job.batch], self.clock.now())
        if res.done_uids and self.on_outbox:
            # Mail to send, or tickets whose clocks the scheduler should look at.
            self.on_outbox(res.new_outbox)
        self._mark(client, res.done_uids)
        result.marked += len(res.done_uids)

    def _checkpoint(self, client: IMAPClient, uidvalidity: int,
                    info: dict[bytes, Any]) -> tuple[int, int, int]:
        """(last UID committed, backlog imported without mail up to, skipped up to)."""
        with transaction(self.ingestor.sessions) as s:
            cp = s.get(MailboxCheckpoint, self.key)
            if cp is None:
                return self._first_look(s, client, uidvalidity, info)
            if cp.uidvalidity != uidvalidity:
                log.warning("%s: UIDVALIDITY changed from %s to %s: re-scanning the folder; "
                            "messages already stored are recognised and not duplicated",
                            self.key, cp.uidvalidity, uidvalidity)
                return 0, 0, 0
            return int(cp.last_uid), int(cp.backlog_until_uid), int(cp.skipped_until_uid)

    def _first_look(self, s: Any, client: IMAPClient, uidvalidity: int,
                    info: dict[bytes, Any]) -> tuple[int, int, int]:
        """imap.backlog (:mod:`mailflow.backlog`), stored with the first checkpoint."""
        policy = self.imap.backlog
        # From the SELECT answer, not a SEARCH: on a folder of 100,000 mails a SEARCH
        # answer costs the daemon ~20 MiB it keeps. Every UID below UIDNEXT was there.
        count = int(info.get(b"EXISTS") or 0)
        newest = int(info.get(b"UIDNEXT") or 1) - 1 if count else 0
        if newest < 0 or b"UIDNEXT" not in info:  # a server that omits it (RFC 3501 asks)
            newest = max((int(u) for u in client.search("ALL")), default=0)
        look = first_look(policy, count, newest)
        if look.message:
            log.info("%s: first look: %s", self.key, look.message)
        backlog, skipped = look.backlog_until_uid, look.skipped_until_uid
        s.add(MailboxCheckpoint(mailbox=self.key, uidvalidity=uidvalidity, last_uid=skipped,
                                updated_at=self.clock.now(), backlog_until_uid=backlog,
                                skipped_until_uid=skipped))
        return skipped, backlog, skipped

    def _unprocessed(self, client: IMAPClient, lo: int, hi: int | None) -> list[int]:
        """Unprocessed UIDs from ``lo`` to ``hi`` (None: the newest), in order."""
        crit: list[str] = ["UID", f"{lo}:{hi if hi is not None else '*'}"]
        if not self.mailbox.processed_folder:
            crit += ["UNKEYWORD", PROCESSED_KEYWORD.decode()]
        return sorted(u for u in map(int, client.search(crit))
                      if u >= lo and (hi is None or u <= hi))

    def _fresh(self, client: IMAPClient, lo: int, uidnext: int) -> Iterator[list[int]]:
        """The new mail in batches, searched a window of UIDs at a time (uidwindows.py)."""
        size = self.imap.batch_size
        spans: Iterable[tuple[int, int | None]] = [(lo, None)]  # no UIDNEXT: one search
        if uidnext > 0:
            if uidnext - lo > 10 * size:  # first look or rescan: start at the oldest mail
                lo = max(lo, oldest_uid(client))
            spans = uid_windows(lo, uidnext, 10 * size)
        for first, last in spans:
            found = self._unprocessed(client, first, last)
            yield from (found[i : i + size] for i in range(0, len(found), size))

    def _fetch(self, client: IMAPClient, uids: list[int]) -> list[Fetched]:
        data = client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE", "FLAGS"])
        out = []
        for uid in uids:
            item = data.get(uid)
            if item is None:
                continue  # expunged by someone else between SEARCH and FETCH
            if PROCESSED_KEYWORD in item.get(b"FLAGS", ()):
                # Another mailflow worker on this folder committed and marked it since
                # our SEARCH: its effects are in the database already.
                continue
            raw = item.get(b"BODY[]") or b""
            when = item.get(b"INTERNALDATE")
            if isinstance(when, datetime):
                # imapclient's own FixedOffset zone does not pickle (the parse worker
                # needs it to); the standard library's fixed-offset zone does.
                offset = when.utcoffset()
                when = when.replace(tzinfo=UTC if offset is None else timezone(offset))
            out.append(Fetched(uid, raw, when if isinstance(when, datetime) else None))
        return out

    def _mark(self, client: IMAPClient, uids: list[int]) -> None:
        if not uids:
            return
        target = self.mailbox.processed_folder
        if target:
            if client.has_capability("MOVE"):
                client.move(uids, target)
            else:
                client.copy(uids, target)
                client.delete_messages(uids)
                if client.has_capability("UIDPLUS"):
                    client.uid_expunge(uids)
                else:
                    client.expunge()
        else:
            # SILENT: the server does not echo 500 FETCH FLAGS lines back (measured:
            # that echo cost as much as fetching the batch).
            client.add_flags(uids, [b"\\Seen", PROCESSED_KEYWORD], silent=True)

    # -- waiting ------------------------------------------------------------------------------
    def wait_for_mail(self, stop: threading.Event) -> None:
        """IDLE until the server reports new mail (or poll), waking for ``stop``."""
        client = self.client
        assert client is not None
        if self.imap.idle and client.has_capability("IDLE"):
            client.idle()
            started = time.monotonic()
            quiet_eof = 0
            try:
                while not stop.is_set():
                    asked = time.monotonic()
                    responses = client.idle_check(timeout=1)
                    _raise_if_gone(responses, time.monotonic() - asked, quiet_eof)
                    # imapclient swallows EOF during IDLE: the socket is readable at once
                    # and yields nothing. Without this, a server that went away leaves
                    # the watcher idling on a dead connection until the IDLE renewal.
                    quiet_eof = quiet_eof + 1 if not responses and \
                        time.monotonic() - asked < 0.5 else 0
                    if any(_is_new_mail(r) for r in responses):
                        return
                    # Renew IDLE in time; and look at the folder every poll_interval
                    # anyway, in case a notice was missed.
                    if time.monotonic() - started > min(
                            IDLE_RENEW_SECONDS, self.imap.poll_interval.total_seconds()):
                        return
            finally:
                client.idle_done()
        else:
            stop.wait(self.imap.poll_interval.total_seconds())

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop``: never exits on a network error, backs off instead."""
        delays = backoff_delays()
        last_problem: str | None = None
        self._stop = stop
        while not stop.is_set():
            try:
                if self.client is None:
                    self.connect()
                    delays = backoff_delays()
                res = self.cycle()
                self.state.succeeded(self.clock.now())
                if res.fetched or res.marked:
                    log.info("%s: fetched %d, marked %d, outcomes %s", self.key, res.fetched,
                             res.marked, dict(res.outcomes))
                else:
                    # Only after a cycle that found nothing: mail that arrived during a
                    # cycle was announced then, not to the IDLE that follows it.
                    self.wait_for_mail(stop)
            except (LoginError, CredentialError, ConfigError) as exc:
                # A refused login or a token helper failing: an administrator's problem,
                # said once per attempt, retried with back-off (a token may come back).
                # Said decoded, naming server and user (the server's words arrive as a
                # bytes repr: b'[AUTHENTICATIONFAILED]...'), as `check --connect` says it.
                self.close()
                self.state.failed(f"login refused: {exc}", self.clock.now())
                i = self.imap
                problem = imap_problem(exc, i.host, i.port, i.security, i.username,
                                       i.timeout.total_seconds())
                delay = next(delays)
                log.error("%s: cannot log in to IMAP as %s (%s); retrying in %.0fs",
                          self.key, i.username, problem, delay)
                stop.wait(delay)
            except NETWORK_ERRORS as exc:
                self.close()
                self.state.failed(f"{type(exc).__name__}: {exc}", self.clock.now())
                delay = next(delays)
                log.warning("%s: IMAP connection problem (%s: %s); reconnecting in %.0fs",
                            self.key, type(exc).__name__, exc, delay)
                stop.wait(delay)
            except SQLAlchemyError as exc:
                # The database is down or locked: nothing was marked, nothing is lost.
                self.state.failed(f"database: {str(exc).splitlines()[0] if str(exc) else exc}",
                                  self.clock.now())
                delay = next(delays)
                log.error("%s: database error (%s); retrying in %.0fs", self.key,
                          str(exc).splitlines()[0] if str(exc) else type(exc).__name__, delay)
                stop.wait(delay)
            except Exception as exc:
                # A password variable gone at reconnect, a bug one mailbox triggers: said
                # once (then at debug while it repeats), backed off, retried.
                self.close()
                delay = next(delays)
                why = f"{type(exc).__name__}: {exc}"
                self.state.failed(why, self.clock.now())
                if why != last_problem:
                    log.error("%s: %s; retrying with back-off (next in %.0fs)", self.key,
                              why.replace("\n", "; "), delay)
                    log.debug("%s: details", self.key, exc_info=True)
                    last_problem = why
                else:
                    log.debug("%s: still failing: %s", self.key, why)
                stop.wait(delay)
                continue
            if last_problem is not None:
                log.info("%s: working again", self.key)
                last_problem = None
        self.close()


def _raise_if_gone(responses: list[Any], waited: float, quiet_eof: int) -> None:
    """A BYE from the server, or a connection that keeps reading as EOF: reconnect."""
    for r in responses:
        if isinstance(r, tuple) and r and r[0] == b"BYE":
            raise ConnectionError(f"the server ended the session: {r[1:]!r}")
    if quiet_eof >= 3 and not responses and waited < 0.5:
        raise ConnectionError("the server closed the connection during IDLE")


def _is_new_mail(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in (
        b"EXISTS", b"RECENT")


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - closing a dead connection must not raise
        with contextlib.suppress(Exception):
            client.shutdown()
