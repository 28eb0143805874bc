"""What a decision needs from the store, read in a few indexed queries per batch.

On PostgreSQL the rows a decision depends on are locked for the rest of the
transaction: the candidate tickets (``FOR NO KEY UPDATE``, in id order) and each sender's
acknowledgment budget (a transaction-scoped advisory lock per address, in address
order). A second worker deciding about the same ticket or sender waits for the first
to commit and then reads what it wrote, so two daemons never act on stale facts and
never send one sender more acknowledgments than the limit together. SQLite has one
writer at a time and needs none of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mailflow.classify.groups import GroupsConfig
from mailflow.linking import (
    LinkFacts,
    LinkPolicy,
    ReferralFacts,
    TicketFacts,
    candidate_ticket_ids,
)
from mailflow.parse import Incoming
from mailflow.store.db import chunks
from mailflow.store.models import (
    OutboxRow,
    Participant,
    QuarantinedMessage,
    Referral,
    StoredMessage,
    Suppression,
    Ticket,
)
from mailflow.tickets import OutboxKind
from mailflow.tickets.decide import StoreFacts


def _pg(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def known_keys(s: Session, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(keys):
        found.update(s.scalars(select(StoredMessage.dedupe_key)
                               .where(StoredMessage.dedupe_key.in_(chunk))))
        found.update(s.scalars(select(QuarantinedMessage.dedupe_key)
                               .where(QuarantinedMessage.dedupe_key.in_(chunk))))
    return found


def ticket_facts(s: Session, ids: Iterable[int], lock: bool = True) -> dict[int, TicketFacts]:
    """The candidate tickets with their participants, referrals and used outbox keys:
    four indexed queries per 500 tickets, none per message."""
    out: dict[int, TicketFacts] = {}
    ordered = sorted(set(ids))
    if not ordered:
        return out
    parts: dict[int, set[str]] = {}
    refs: dict[int, list[ReferralFacts]] = {}
    keys: dict[int, set[str]] = {}
    locking = lock and _pg(s)
    for chunk in chunks(ordered):
        q = (select(Ticket.id, Ticket.status, Ticket.reply_token, Ticket.closed_at,
                    Ticket.severity, Ticket.owner_group, Ticket.requester, Ticket.subject,
                    Ticket.category)
             .where(Ticket.id.in_(chunk)).order_by(Ticket.id))
        if locking:
            q = q.with_for_update(of=Ticket, key_share=True)
        rows = s.execute(q).all()
        for tid, addr in s.execute(select(Participant.ticket_id, Participant.address)
                                   .where(Participant.ticket_id.in_(chunk))):
            parts.setdefault(tid, set()).add(addr)
        for r in s.scalars(select(Referral).where(Referral.ticket_id.in_(chunk))
                           .order_by(Referral.id)):
            refs.setdefault(r.ticket_id, []).append(ReferralFacts(
                r.id, r.group, r.token, r.ended_at is None, r.accepted_at, r.eta,
                r.next_update_due, r.external_ref))
        for tid, key in s.execute(select(OutboxRow.ticket_id, OutboxRow.dedupe_key)
                                  .where(OutboxRow.ticket_id.in_(chunk),
                                         OutboxRow.dedupe_key.is_not(None))):
            keys.setdefault(tid, set()).add(key)
        for t in rows:
            out[t.id] = TicketFacts(t.id, t.status, t.reply_token, t.closed_at,
                                    frozenset(parts.get(t.id, ())), t.severity, t.owner_group,
                                    t.requester, t.subject, t.category,
                                    tuple(refs.get(t.id, ())), frozenset(keys.get(t.id, ())))
    return out


def case_refs(s: Session, msgs: list[Incoming], groups: GroupsConfig | None
              ) -> dict[str, tuple[int, str, str]]:
    """Mail from a group's domain naming one of its case numbers that a referral
    recorded: one query per batch, and none when no group has ``external_ref``."""
    if groups is None or not any(g.external_ref for g in groups.groups.values()):
        return {}
    named: dict[str, tuple[str, str]] = {}
    for m in msgs:
        hit = groups.case_reference(m.from_addr, m.subject, m.new_text)
        if hit is not None:
            named[m.dedupe_key] = hit
    if not named:
        return {}
    found: dict[tuple[str, str], int] = {}
    cases = sorted({v for _, c in named.values() for v in (c, c.upper())})
    for chunk in chunks(cases):
        for tid, group, case in s.execute(
                select(Referral.ticket_id, Referral.group, Referral.external_ref)
                .where(Referral.external_ref.in_(chunk)).order_by(Referral.id)):
            found[(group, case.upper())] = tid
    out: dict[str, tuple[int, str, str]] = {}
    for key, (group, case) in named.items():
        tid = found.get((group, case.upper()))
        if tid is not None:
            out[key] = (tid, group, case)
    return out


def link_facts(s: Session, msgs: list[Incoming], policy: LinkPolicy,
               groups: GroupsConfig | None = None) -> LinkFacts:
    mids: set[str] = set()
    ids: set[int] = set()
    for m in msgs:
        mids.update(m.references)
        if m.in_reply_to:
            mids.add(m.in_reply_to)
        if m.message_id:
            mids.add(m.message_id)
        if m.report and m.report.original_message_id:
            mids.add(m.report.original_message_id)
        ids |= candidate_ticket_ids(m, policy)
    message_ids: dict[str, int] = {}
    sent: set[str] = set()
    for chunk in chunks(sorted(mids)):
        for mid, tid in s.execute(select(StoredMessage.message_id, StoredMessage.ticket_id)
                                  .where(StoredMessage.message_id.in_(chunk))):
            if tid is not None:
                message_ids.setdefault(mid, tid)
        for mid, tid in s.execute(select(OutboxRow.message_id, OutboxRow.ticket_id)
                                  .where(OutboxRow.message_id.in_(chunk))):
            sent.add(mid)
            if tid is not None:
                message_ids[mid] = tid
    ids |= set(message_ids.values())
    cases = case_refs(s, msgs, groups)
    ids |= {tid for tid, _, _ in cases.values()}
    return LinkFacts(ticket_facts(s, ids), message_ids, frozenset(sent), cases)


def ack_budget(s: Session, senders: Iterable[str], now: datetime
               ) -> tuple[dict[str, int], dict[str, str]]:
    """Acknowledgments sent to each sender in the last hour, and suppressed senders."""
    ordered = sorted(set(senders))
    if _pg(s):
        for chunk in chunks(ordered):
            # hashtextextended: a 64-bit key per address; a collision only serialises
            # two unrelated senders a little more.
            s.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(a, 0)) "
                           "FROM unnest(CAST(:addrs AS text[])) AS a ORDER BY a"),
                      {"addrs": list(chunk)})
    counts: dict[str, int] = {}
    suppressed: dict[str, str] = {}
    since = now - timedelta(hours=1)
    for chunk in chunks(ordered):
        for addr, n in s.execute(
            select(OutboxRow.recipient, func.count())
            .where(OutboxRow.recipient.in_(chunk),
                   OutboxRow.kind == str(OutboxKind.ACKNOWLEDGMENT),
                   OutboxRow.created_at >= since)
            .group_by(OutboxRow.recipient)
        ):
            counts[addr] = n
        suppressed.update((a, r) for a, r in s.execute(
            select(Suppression.address, Suppression.reason)
            .where(Suppression.address.in_(chunk))))
    return counts, suppressed


def gather(s: Session, keys: list[str], msgs: list[Incoming], policy: LinkPolicy,
           now: datetime, groups: GroupsConfig | None = None) -> StoreFacts:
    """Everything :func:`mailflow.tickets.decide.decide_batch` reads, for one batch."""
    known = known_keys(s, keys)
    fresh = [m for m in msgs if m.dedupe_key not in known]
    link = link_facts(s, fresh, policy, groups)
    counts, suppressed = ack_budget(s, (m.from_addr for m in fresh if m.from_addr), now)
    return StoreFacts(link, frozenset(known), counts, suppressed)
