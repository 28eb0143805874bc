"""The read side of the store: what the CLI (and people) ask about tickets.

Writes go through :mod:`mailflow.tickets.apply`; reads that show state to a person
live here, so a command module only parses options and prints, and the same query
serves the table and the ``--json`` form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.store.models import (
    EscalationStep,
    OutboxRow,
    QuarantinedMessage,
    Referral,
    StoredMessage,
    Ticket,
    TicketClock,
    TicketEvent,
)
from mailflow.tickets import OPEN_STATUSES


@dataclass(frozen=True)
class TicketFilter:
    only_open: bool = False
    statuses: tuple[str, ...] = ()
    owner: str | None = None  # "-" or "none": tickets without an owner
    severities: tuple[int, ...] = ()
    requester: str | None = None  # an address, or @domain
    since: datetime | None = None
    # Only open tickets with a stored clock (not stopped) due before this moment.
    due_before: datetime | None = None


def _open() -> list[str]:
    return [str(x) for x in OPEN_STATUSES]


def list_tickets(s: Session, f: TicketFilter, limit: int = 200) -> Sequence[Ticket]:
    """Newest first."""
    q = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
    if f.only_open:
        q = q.where(Ticket.status.in_(_open()))
    if f.statuses:
        q = q.where(Ticket.status.in_(f.statuses))
    if f.owner is not None:
        q = q.where(Ticket.owner_group.is_(None) if f.owner in ("-", "none")
                    else Ticket.owner_group == f.owner)
    if f.severities:
        q = q.where(Ticket.severity.in_(f.severities))
    if f.requester:
        who = f.requester.strip().lower()
        q = q.where(func.lower(Ticket.requester).like(f"%{who}") if who.startswith("@")
                    else func.lower(Ticket.requester) == who)
    if f.since is not None:
        q = q.where(Ticket.created_at >= f.since)
    if f.due_before is not None:
        # The clocks the scheduler stored: nothing is recomputed for a listing.
        due = (select(TicketClock.ticket_id)
               .where(TicketClock.stopped_at.is_(None), TicketClock.due_at.is_not(None),
                      TicketClock.due_at <= f.due_before))
        q = q.where(Ticket.id.in_(due), Ticket.status.in_(_open()))
    return s.scalars(q).all()


def quarantined_count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(QuarantinedMessage)
                    .where(QuarantinedMessage.released_at.is_(None))) or 0


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d is not None else None


def ticket_detail(s: Session, tid: int) -> tuple[Ticket, dict[str, Any]] | None:
    """One ticket with everything a person asks about it, as plain data (times ISO)."""
    t = s.get(Ticket, tid)
    if t is None:
        return None
    data: dict[str, Any] = {"participants": sorted(p.address for p in t.participants)}
    data["messages"] = [
        {"id": m.id, "direction": m.direction, "from": m.from_addr, "subject": m.subject,
         "received_at": _iso(m.received_at), "message_id": m.message_id,
         "text": m.new_text, "flags": m.flags,
         "attachments": [{"filename": a.filename, "type": a.content_type, "size": a.size,
                          "kept": a.kept} for a in m.attachments]}
        for m in s.scalars(select(StoredMessage).where(StoredMessage.ticket_id == tid)
                           .order_by(StoredMessage.id))]
    data["events"] = [
        {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "summary": e.summary,
         "data": e.data}
        for e in s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == tid)
                           .order_by(TicketEvent.id))]
    data["outbox"] = [
        {"id": o.id, "kind": o.kind, "to": o.recipient, "status": o.status,
         "message_id": o.message_id, "last_error": o.last_error}
        for o in s.scalars(select(OutboxRow).where(OutboxRow.ticket_id == tid)
                           .order_by(OutboxRow.id))]
    data["clocks"] = [
        {"kind": c.kind, "episode": c.episode, "state": c.state, "policy": c.policy,
         "started": _iso(c.started_at), "due": _iso(c.due_at), "stopped": _iso(c.stopped_at)}
        for c in s.scalars(select(TicketClock).where(TicketClock.ticket_id == tid)
                           .order_by(TicketClock.kind, TicketClock.episode))]
    data["referrals"] = [
        {"group": r.group, "reason": r.reason, "created": _iso(r.created_at),
         "accepted": _iso(r.accepted_at), "eta": _iso(r.eta),
         "next_update_due": _iso(r.next_update_due), "case_ref": r.external_ref,
         "ended": _iso(r.ended_at),
         # Accepted without #eta or #next-update: the group owes one (issue 11).
         "eta_missing": r.accepted_at is not None and r.ended_at is None
         and r.eta is None and r.next_update_due is None}
        for r in s.scalars(select(Referral).where(Referral.ticket_id == tid)
                           .order_by(Referral.id))]
    data["escalations"] = [
        {"chain": e.chain, "step": e.step, "clock": e.clock, "episode": e.episode,
         "fired_at": _iso(e.fired_at), "late": e.late}
        for e in s.scalars(select(EscalationStep).where(EscalationStep.ticket_id == tid)
                           .order_by(EscalationStep.fired_at))]
    return t, data


def due_clocks(s: Session, before: datetime) -> list[tuple[TicketClock, str, str]]:
    """Running or paused clocks of open tickets due before ``before``: (clock, subject,
    status), soonest first."""
    rows = s.execute(
        select(TicketClock, Ticket.subject, Ticket.status)
        .join(Ticket, Ticket.id == TicketClock.ticket_id)
        .where(TicketClock.stopped_at.is_(None), TicketClock.due_at.is_not(None),
               TicketClock.due_at <= before, Ticket.status.in_(_open()))
        .order_by(TicketClock.due_at)).all()
    return [(c, subject, status) for c, subject, status in rows]
