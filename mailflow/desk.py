"""The help desk's hands on tickets and quarantine, without a command line around them.

``mailflow tickets resolve|close|reopen|assign|note`` and ``mailflow quarantine release``
are thin: they parse and print. What they *do* lives here, in two halves:

- pure builders that turn a ticket as it is now (:class:`~mailflow.linking.TicketFacts`)
  into the effects of one desk action, or refuse with a :class:`DeskError` that is one
  line for the user (resolving a closed ticket, reopening an open one, an unknown group);
- :func:`act` and :func:`release`, which read and lock what a decision needs and write
  the effects with :func:`mailflow.tickets.apply.apply` in one transaction, so a CLI
  action leaves the same event trail as ingest does and races no daemon.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker, undefer

from mailflow.classify import RuleSet
from mailflow.ingest import TRANSIENT, Ingestor
from mailflow.linking import TicketFacts
from mailflow.prepare import Fetched, Prepared, prepare_one
from mailflow.store import facts as store_facts
from mailflow.store.db import transaction
from mailflow.store.models import QuarantinedMessage, StoredMessage
from mailflow.tickets import OPEN_STATUSES, EventKind, Status
from mailflow.tickets.apply import Applied, ApplyContext, apply
from mailflow.tickets.decide import MessageDecision, Source, StoreFacts, decide_batch
from mailflow.tickets.effects import (
    AddMessage,
    Effect,
    Note,
    OpenTicket,
    Quarantine,
    Reopen,
    SetOwner,
    SetStatus,
)

__all__ = ["DeskError", "Released", "act", "actor", "assign", "close", "note", "release",
           "reopen", "resolve"]


class DeskError(Exception):
    """A desk action that makes no sense for the ticket as it is; the message is the one
    line the user sees."""


def actor(env: Mapping[str, str] | None = None) -> str:
    """``cli:$USER``: the event trail names the person, not just "the command line"."""
    env = os.environ if env is None else env
    user = env.get("USER") or env.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry in a container: still act
            user = "unknown"
    return f"cli:{user}"


# -- pure: the effects of one action on a ticket as it is ---------------------------------

def _name(t: TicketFacts, prefix: str) -> str:
    return f"{prefix}-{t.id}"


def resolve(t: TicketFacts, by: str, note_text: str | None = None,
            prefix: str = "SUP") -> list[Effect]:
    """Resolved, with the resolution as an internal note when given."""
    if t.status == Status.RESOLVED:
        raise DeskError(f"{_name(t, prefix)} is already resolved")
    if t.status == Status.CLOSED:
        raise DeskError(f"{_name(t, prefix)} is closed: reopen it first to resolve it again")
    fx: list[Effect] = [SetStatus(t.id, Status.RESOLVED, "resolved from the command line",
                                  by, previous=t.status)]
    if note_text:
        fx.append(_note(t.id, note_text, by))
    return fx


def close(t: TicketFacts, by: str, prefix: str = "SUP") -> list[Effect]:
    """Closed from any other status: a reply after the reopen window opens a new ticket."""
    if t.status == Status.CLOSED:
        raise DeskError(f"{_name(t, prefix)} is already closed")
    return [SetStatus(t.id, Status.CLOSED, "closed from the command line", by,
                      previous=t.status)]


def reopen(t: TicketFacts, by: str, reason: str, now: datetime,
           prefix: str = "SUP") -> list[Effect]:
    """Only a resolved or closed ticket can be reopened; the reason is required because
    a reopen counts against the desk (``reopen_count``)."""
    if t.status in OPEN_STATUSES:
        raise DeskError(f"{_name(t, prefix)} is not resolved or closed (status {t.status}): "
                        "nothing to reopen")
    if not reason.strip():
        raise DeskError("a reopen needs a reason (--reason)")
    return [Reopen(t.id, now, reason.strip(), by)]


def assign(t: TicketFacts, group: str, groups: Collection[str], by: str,
           reason: str | None = None, prefix: str = "SUP") -> list[Effect]:
    """A new owner group, which must be one the rules' groups.yaml defines."""
    if group not in groups:
        raise DeskError(f"unknown group {group!r} (known: {', '.join(sorted(groups))})")
    if t.status == Status.CLOSED:
        raise DeskError(f"{_name(t, prefix)} is closed: reopen it first to assign it")
    if t.owner_group == group:
        raise DeskError(f"{_name(t, prefix)} is already owned by {group}")
    why = reason.strip() if reason and reason.strip() else "assigned from the command line"
    return [SetOwner(t.id, group, why, by, previous=t.owner_group)]


def note(t: TicketFacts, text: str, by: str) -> list[Effect]:
    """An internal note: an event on the trail, never mail to anyone."""
    if not text.strip():
        raise DeskError("an empty note says nothing")
    return [_note(t.id, text, by)]


def _note(ticket: int, text: str, by: str) -> Note:
    return Note(ticket, EventKind.NOTE, text.strip(), by)


# -- effects written in one transaction ---------------------------------------------------

def act(sessions: sessionmaker[Session], ticket_id: int,
        build: Callable[[TicketFacts], Sequence[Effect]], ctx: ApplyContext) -> Applied:
    """Read (and on PostgreSQL lock) the ticket, build the effects from it as it is, and
    apply them, all in one transaction: a daemon changing the same ticket at the same
    moment either went first (and ``build`` sees its change) or waits for us."""
    with transaction(sessions) as s:
        t = store_facts.ticket_facts(s, [ticket_id]).get(ticket_id)
        if t is None:
            raise DeskError(f"no ticket {ctx.prefix}-{ticket_id}")
        return apply(s, build(t), ctx)


@dataclass(frozen=True)
class Released:
    """What releasing a quarantined message did."""

    quarantine_id: int
    outcome: str  # new, join, reopen, ..., duplicate (stored meanwhile), quarantined
    ticket: int | None = None
    reason: str | None = None  # the new reason when it stays in quarantine


def release(sessions: sessionmaker[Session],
            pick: Callable[[str], tuple[Ingestor, RuleSet]],
            quarantine_id: int, now: datetime, by: str) -> Released:
    """Process a quarantined message again, after a fix, as ingest would have.

    The message is prepared with the current rules and decided against the store as it
    is. If it was stored meanwhile (under its own key or the raw one), nothing is stored
    twice: the row is only marked released. If it still cannot become ticket mail, it
    stays in quarantine with the new reason. The quarantine row is locked on PostgreSQL,
    so two releases of one message do not both store it. ``pick`` gives the ingestor and
    rules of the mailbox the message came from (its desk, with its defaults).
    """
    with transaction(sessions) as s:
        q = s.scalars(select(QuarantinedMessage)
                      .where(QuarantinedMessage.id == quarantine_id)
                      .options(undefer(QuarantinedMessage.raw))
                      .with_for_update()).first()
        if q is None:
            raise DeskError(f"no quarantined message {quarantine_id}")
        if q.released_at is not None:
            raise DeskError(f"quarantined message {quarantine_id} was already released "
                            f"({q.released_at:%Y-%m-%d %H:%M} UTC)")
        ingestor, rules = pick(q.mailbox or "")
        st = ingestor.settings
        p = prepare_one(Fetched(q.uid or 0, q.raw, q.created_at), rules, now, st.tz,
                        ingestor.own)
        keys = sorted({q.dedupe_key, p.key})
        stored = s.execute(select(StoredMessage.ticket_id)
                           .where(StoredMessage.dedupe_key.in_(keys))).first()
        if stored is not None:
            q.released_at = now
            return Released(quarantine_id, "duplicate", stored.ticket_id)
        d = _decide(s, ingestor, p, q, now)
        still = next((e for e in d.effects if isinstance(e, Quarantine)), None)
        if still is not None:
            q.reason = still.reason
            return Released(quarantine_id, "quarantined", reason=still.reason)
        effects = list(d.effects)
        tid = _ticket_of(effects)
        if tid is not None:
            effects.append(Note(tid, EventKind.NOTE,
                                f"message released from quarantine #{quarantine_id} "
                                f"(was: {q.reason[:200]})", by))
        try:
            with s.begin_nested():
                applied = apply(s, effects, ingestor.apply_context(now))
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001 - stays quarantined, with the reason
            first = (str(exc).strip().splitlines() or [""])[0][:500]
            q.reason = f"could not be stored: {type(exc).__name__}: {first}"
            return Released(quarantine_id, "quarantined", reason=q.reason)
        q.released_at = now
        real = applied.ids.get(tid, tid) if tid is not None else None
        return Released(quarantine_id, d.outcome, real)


def _decide(s: Session, ingestor: Ingestor, p: Prepared, q: QuarantinedMessage,
            now: datetime) -> MessageDecision:
    """``Ingestor.decide`` minus one thing: the store knows this message's key (it is in
    quarantine), which would make it a duplicate of itself. So the facts are gathered
    the way ``store.facts.gather`` does, for a message known not to be stored."""
    msgs = [p.msg] if p.msg is not None else []
    link = store_facts.link_facts(s, msgs, ingestor.policy.link)
    counts, suppressed = store_facts.ack_budget(
        s, [m.from_addr for m in msgs if m.from_addr], now)
    facts = StoreFacts(link, frozenset(), counts, suppressed)
    # Nothing released is backlog: UID 0 (unknown) must not read as "before the first
    # checkpoint".
    source = Source(q.mailbox, q.uidvalidity, backlog_until_uid=-1)
    return decide_batch([p], facts, ingestor.policy, source, now)[0]


def _ticket_of(effects: Sequence[Effect]) -> int | None:
    """The ticket the message went to: a new one's key, or the one it joined."""
    for e in effects:
        if isinstance(e, OpenTicket):
            return e.key
    for e in effects:
        if isinstance(e, AddMessage):
            return e.ticket
    return None

