"""Fetched messages to committed tickets, events and queued mail: one transaction a batch.

The IMAP side hands over a batch that :mod:`mailflow.prepare` has parsed and classified.
This module gathers what the decision needs (:mod:`mailflow.store.facts`), decides
(:func:`mailflow.tickets.decide.decide_batch`, pure), writes the effects through the one
writer (:func:`mailflow.tickets.apply.apply`) and advances the mailbox checkpoint, all in
one commit. Only after that commit does the caller mark the messages processed on the
server, so a crash anywhere leaves either nothing done (the mail is fetched again) or
everything done (the dedupe key and the checkpoint make the second look a no-op).

**Shunt, never stall.** When a batch cannot be committed for a reason that is not the
database being unreachable (a value one backend refuses, a bug that one message
triggers), the batch is done again one message at a time, and the message that fails
is quarantined with the error's text and its raw bytes. The other messages are
committed and marked; nothing retries forever.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from mailflow.accounts import Account, accounts, apply_context
from mailflow.classify import RuleSet
from mailflow.config import Settings
from mailflow.groupsholder import GroupsHolder
from mailflow.linking import LinkPolicy
from mailflow.policies import PoliciesHolder
from mailflow.prepare import Fetched, Prepared, prepare_batch, prepare_one, raw_key
from mailflow.store import facts as store_facts
from mailflow.store.db import transaction
from mailflow.store.models import MailboxCheckpoint
from mailflow.tickets.apply import Applied, ApplyContext, apply
from mailflow.tickets.decide import (
    IngestPolicy,
    MessageDecision,
    SeverityPromise,
    Source,
    decide_batch,
)
from mailflow.tickets.effects import (
    OpenTicket,
    Quarantine,
    Refer,
    Reopen,
    SetSeverity,
    StaffAnswer,
)
from mailflow.tickets.wording import human_duration

__all__ = ["BatchResult", "Fetched", "Ingestor", "Prepared", "prepare_batch", "prepare_one"]

log = logging.getLogger(__name__)

# The database itself is unreachable or busy: per-message retries would fail the same
# way and quarantine good mail. These propagate; the watcher backs off and nothing is
# marked.
TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
             sa_exc.TimeoutError)


@dataclass
class BatchResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    # UIDs whose effects are committed: safe to mark processed on the server.
    done_uids: list[int] = field(default_factory=list)
    new_outbox: int = 0
    opened: list[int] = field(default_factory=list)
    shunted: int = 0  # messages quarantined because their commit failed
    # One line per ticket event worth knowing, logged once the commit succeeded.
    notices: list[str] = field(default_factory=list)


def ingest_policy(settings: Settings, account: Account | None = None) -> IngestPolicy:
    own = settings.all_own_addresses()
    account = account or accounts(settings)[0]
    return IngestPolicy(
        link=LinkPolicy(account.support_address, own, account.prefix,
                        settings.reopen_window),
        support_address=account.support_address,
        ack_limit=settings.acknowledgment.max_per_sender_per_hour,
        severities={n: SeverityPromise(level.label, human_duration(level.first_response))
                    for n, level in settings.severities.items()},
        max_attachment_size=settings.max_attachment_size,
        tz=settings.tz,
    )


class Ingestor:
    """Ingest for one mailbox account (desk): its address, prefix and link policy."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 account: Account | None = None):
        self.settings = settings
        self.sessions = sessions
        self.account = account or accounts(settings)[0]
        self.own = settings.all_own_addresses()
        self.policy = ingest_policy(settings, self.account)
        self.groups = GroupsHolder(settings.rules_path)
        self.slas = PoliciesHolder(settings.rules_path, settings.tz)

    def apply_context(self, now: datetime) -> ApplyContext:
        return apply_context(self.settings, now, self.account.desk)

    # -- entry points ----------------------------------------------------------------
    def ingest(self, mailbox: str, uidvalidity: int, batch: Sequence[Fetched],
               rules: RuleSet, now: datetime, backlog_until_uid: int = 0) -> BatchResult:
        """Prepare and commit one batch in this thread."""
        return self.commit(mailbox, uidvalidity, self.prepare(batch, rules, now), now,
                           backlog_until_uid)

    def prepare(self, batch: Sequence[Fetched], rules: RuleSet,
                now: datetime) -> list[Prepared]:
        return prepare_batch(batch, rules, now, self.settings.tz, self.own)

    def decide(self, s: Session, prepared: Sequence[Prepared], source: Source,
               now: datetime) -> list[MessageDecision]:
        """The decisions for a batch against the store as it is (nothing written)."""
        msgs = [p.msg for p in prepared if p.msg is not None]
        groups = self.groups.refresh()
        facts = store_facts.gather(s, [p.key for p in prepared], msgs, self.policy.link, now,
                                   groups)
        slas = self.slas.refresh()
        policy = replace(self.policy, groups=groups,
                         sla=slas.sla if slas is not None else None)
        return decide_batch(prepared, facts, policy, source, now)

    def commit(self, mailbox: str, uidvalidity: int, prepared: Sequence[Prepared],
               now: datetime, backlog_until_uid: int = 0, role: str = "inbox") -> BatchResult:
        """Everything that needs the database, in one transaction with the checkpoint;
        one message at a time, quarantining the one that fails, if the batch fails."""
        source = Source(mailbox, uidvalidity, backlog_until_uid, role)
        try:
            with transaction(self.sessions) as s:
                result = self._write(s, prepared, source, now)
            _log_notices(result)
            return result
        except TRANSIENT:
            raise
        except Exception as exc:
            if not prepared:
                raise
            log.warning("%s: committing a batch of %d failed (%s: %s); redoing it one "
                        "message at a time", mailbox, len(prepared), type(exc).__name__,
                        _short(exc))
            return self._shunt(prepared, source, now)

    # -- internals -----------------------------------------------------------------------
    def _write(self, s: Session, prepared: Sequence[Prepared], source: Source,
               now: datetime) -> BatchResult:
        result = BatchResult()
        decisions = self.decide(s, prepared, source, now)
        applied = apply(s, (e for d in decisions for e in d.effects), self.apply_context(now))
        for d in decisions:
            result.done_uids.append(d.uid)
            result.outcomes[d.outcome] += 1
        _record(result, applied)
        result.notices = notices(decisions, applied.ids, self.account.prefix)
        if prepared and source.mailbox is not None and source.uidvalidity is not None:
            advance_checkpoint(s, source.mailbox, source.uidvalidity,
                               max(p.fetched.uid for p in prepared), now)
        return result

    def _shunt(self, prepared: Sequence[Prepared], source: Source,
               now: datetime) -> BatchResult:
        result = BatchResult()
        for p in prepared:
            try:
                with transaction(self.sessions) as s:
                    one = self._write(s, [p], source, now)
                _log_notices(one)
            except TRANSIENT:
                raise
            except Exception as exc:  # noqa: BLE001 - quarantined with the reason
                reason = f"could not be stored: {type(exc).__name__}: {_short(exc)}"
                log.error("%s uid %s quarantined: %s", source.mailbox, p.fetched.uid, reason)
                with transaction(self.sessions) as s:
                    known = store_facts.known_keys(s, [p.key])
                    q = Quarantine(p.fetched, p.key if p.msg is not None
                                   else raw_key(p.fetched.raw), reason, source.mailbox,
                                   source.uidvalidity)
                    one = BatchResult(done_uids=[p.fetched.uid])
                    if known:
                        one.outcomes["duplicate"] += 1
                    else:
                        apply(s, [q], self.apply_context(now))
                        one.outcomes["quarantined"] += 1
                        one.shunted = 1
                    if source.mailbox is not None and source.uidvalidity is not None:
                        advance_checkpoint(s, source.mailbox, source.uidvalidity,
                                           p.fetched.uid, now)
            result.done_uids += one.done_uids
            result.outcomes.update(one.outcomes)
            result.new_outbox += one.new_outbox
            result.opened += one.opened
            result.shunted += one.shunted
        return result


def notices(decisions: Sequence[MessageDecision], ids: dict[int, int],
            prefix: str) -> list[str]:
    """``opened SUP-5 for x@y: severity 2, tier2``: what an administrator wants to see in
    the log per ticket, not only a batch's counts (no message text at info)."""
    out: list[str] = []
    for d in decisions:
        for e in d.effects:
            match e:
                case OpenTicket():
                    out.append(f"opened {prefix}-{ids.get(e.key, e.key)} for "
                               f"{e.requester or '(unknown sender)'}: severity {e.severity}, "
                               f"{e.category}, {e.owner_group or 'frontline'}")
                case Reopen():
                    out.append(f"reopened {prefix}-{e.ticket}: {e.reason}")
                case SetSeverity():
                    out.append(f"{prefix}-{ids.get(e.ticket, e.ticket)}: severity "
                               f"{e.previous} -> {e.severity}")
                case Refer():
                    out.append(f"{prefix}-{ids.get(e.ticket, e.ticket)} referred to {e.group}")
                case StaffAnswer():
                    out.append(f"{prefix}-{e.ticket}: answered by {e.actor} (Sent folder)")
    return out


def _log_notices(result: BatchResult) -> None:
    for line in result.notices:
        log.info("%s", line)


def _record(result: BatchResult, applied: Applied) -> None:
    result.new_outbox += applied.queued
    result.opened += applied.opened


def _short(exc: BaseException) -> str:
    """The first line of an error: a database error's text includes the whole SQL."""
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


def advance_checkpoint(s: Session, mailbox: str, uidvalidity: int, last_uid: int,
                       now: datetime) -> None:
    cp = s.get(MailboxCheckpoint, mailbox)
    if cp is None:
        s.add(MailboxCheckpoint(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=last_uid,
                                updated_at=now))
    elif cp.uidvalidity != uidvalidity:
        cp.uidvalidity, cp.last_uid, cp.updated_at = uidvalidity, last_uid, now
    else:
        cp.last_uid, cp.updated_at = max(cp.last_uid, last_uid), now
