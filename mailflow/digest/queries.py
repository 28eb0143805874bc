"""The digest's reads: aggregate SQL that works on SQLite and PostgreSQL.

A million tickets must not travel into Python for one morning mail (bench/digest.py):
the 7- and 30-day figures are counted in SQL (GROUP BY, COUNT DISTINCT, EXISTS), and
only the tickets touched on the day itself become :class:`TicketRecord` s, because
medians and percentiles need the day's sorted durations. The definitions are those of
:func:`mailflow.digest.metrics.counts`; an integration test holds the two together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    case,
    column,
    func,
    inspect,
    or_,
    select,
    table,
    text,
    union,
)
from sqlalchemy.orm import Session, aliased

from mailflow.digest.metrics import AGE_BANDS, Backlog
from mailflow.digest.records import (
    OPEN,
    ClockRecord,
    Escalation,
    EscalationRow,
    MailboxRecord,
    MailHealth,
    ReferralRecord,
    TicketRecord,
    Window,
)
from mailflow.store.db import chunks
from mailflow.store.models import (
    MailboxCheckpoint,
    OutboxRow,
    QuarantinedMessage,
    Referral,
    Ticket,
    TicketEvent,
    UTCDateTime,
)

E = TicketEvent
OPENED, CUSTOMER, REOPENED, STATUS = "opened", "customer-message", "reopened", "status-changed"
ESCALATED, REQUESTED, NOTE = "escalated", "escalation-requested", "note"
RESPONSE_KINDS = ("status-update",)  # mailflow.tickets.RESPONSE_KINDS
# The events a ticket's record is built from (the (kind, at) index serves each).
RECORD_KINDS = (CUSTOMER, REOPENED, STATUS, ESCALATED, REQUESTED, NOTE, OPENED)

CLOCKS = table(
    "ticket_clocks", column("ticket_id", Integer), column("kind", String),
    column("episode", Integer), column("severity", Integer), column("owner_group", String),
    column("started_at", UTCDateTime()), column("due_at", UTCDateTime()),
    column("stopped_at", UTCDateTime()), column("state", String))


def _in(col: Any, w: Window) -> ColumnElement[bool]:
    return and_(col >= w.start, col < w.end)


def _resolved(ev: Any = E, by_ticket: bool = False) -> ColumnElement[bool]:
    return and_(_kind(ev, STATUS, by_ticket), ev.data["status"].as_string() == "resolved")


def _kind(ev: Any, kind: str, by_ticket: bool) -> ColumnElement[bool]:
    """``by_ticket``: the query also names the ticket, and must look it up by the
    ``(ticket_id, id)`` index. Without statistics SQLite prefers ``(kind, at)`` and
    scans every event of the kind for each row (a million tickets: minutes);
    ``kind || ''`` keeps that index out of the choice on both databases."""
    return (ev.kind + "" if by_ticket else ev.kind) == kind


def _rating(ev: Any = E) -> ColumnElement[bool]:
    return or_(ev.kind == "rating",
               and_(ev.kind == NOTE, ev.data["what"].as_string() == "rating"))


def _within(s: Session, later: Any, earlier: Any, seconds: float) -> ColumnElement[bool]:
    """``later <= earlier + seconds`` in each dialect's own date arithmetic."""
    if s.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400 <= seconds
    return later <= earlier + func.make_interval(0, 0, 0, 0, 0, 0, seconds)


@contextmanager
def large_reads(s: Session) -> Iterator[None]:
    """The digest reads a month of rows once a day: on SQLite, map the file and sort
    in memory for this connection instead of paging through a 2 MB cache. Undone after:
    the connection goes back to the pool, and a mapped database counts in the daemon's
    resident memory for as long as the mapping lasts."""
    sqlite = s.get_bind().dialect.name == "sqlite"
    if sqlite:
        s.execute(text("PRAGMA mmap_size=4294967296"))
        s.execute(text("PRAGMA temp_store=MEMORY"))
    try:
        yield
    finally:
        if sqlite:
            s.execute(text("PRAGMA mmap_size=0"))
            s.execute(text("PRAGMA temp_store=DEFAULT"))


def has_clocks(s: Session) -> bool:
    """The SLA clocks table lands with the clocks work; until then there are no clocks."""
    return inspect(s.connection()).has_table("ticket_clocks")


def touched(s: Session, w: Window) -> list[int]:
    """Tickets answered, resolved or rated in the window: the only ones loaded (the
    medians and percentiles of the day need them; everything else is counted in SQL)."""
    # Responses through their mail-sent events: the outbox has no index on sent_at.
    sent = E.data["outbox_id"].as_integer()
    q = union(
        select(E.ticket_id).where(E.kind.in_((STATUS, NOTE, "rating")), _in(E.at, w)),
        select(E.ticket_id).join(OutboxRow, OutboxRow.id == sent).where(
            E.kind == "mail-sent", _in(E.at, w), OutboxRow.kind.in_(RESPONSE_KINDS)))
    return sorted(i for (i,) in s.execute(q) if i is not None)


def records(s: Session, ids: Sequence[int]) -> list[TicketRecord]:
    """Whole histories of the given tickets (four Core queries per 500 tickets; the
    rules of their opened events are not read: rule hits are counted in SQL)."""
    out: list[TicketRecord] = []
    conn = s.connection()
    te, ob, rf, tk = (TicketEvent.__table__.c, OutboxRow.__table__.c,
                      Referral.__table__.c, Ticket.__table__.c)
    kinds = [k for k in RECORD_KINDS if k != OPENED]
    for chunk in chunks(list(ids)):
        evs: dict[int, list[Any]] = {}
        for row in conn.execute(select(te.ticket_id, te.kind, te.at, te.data).where(
                te.ticket_id.in_(chunk), (te.kind + "").in_(kinds))
                .order_by(te.at, te.id)):
            evs.setdefault(row.ticket_id, []).append(row)
        sent: dict[int, list[datetime]] = {}
        for tid, at in conn.execute(select(ob.ticket_id, ob.sent_at).where(
                ob.ticket_id.in_(chunk), ob.kind.in_(RESPONSE_KINDS),
                ob.status + "" == "sent").order_by(ob.sent_at)):
            sent.setdefault(tid, []).append(at)
        refs: dict[int, list[datetime]] = {}
        for tid, at in conn.execute(select(rf.ticket_id, rf.created_at).where(
                rf.ticket_id.in_(chunk)).order_by(rf.created_at)):
            refs.setdefault(tid, []).append(at)
        for t in conn.execute(select(tk.id, tk.created_at, tk.requester, tk.severity,
                                     tk.category, tk.owner_group, tk.status)
                              .where(tk.id.in_(chunk))):
            out.append(_record(t, evs.get(t.id, []), sent.get(t.id, []), refs.get(t.id, [])))
    return sorted(out, key=lambda r: r.id)


def _record(t: Any, evs: list[Any], sent: list[datetime], refs: list[datetime]
            ) -> TicketRecord:
    f: dict[str, list[Any]] = {k: [] for k in (
        "customer_messages", "resolutions", "reopens", "waits", "escalations",
        "escalation_requests", "ratings")}
    rules: tuple[str, ...] = ()
    waiting: datetime | None = None
    for e in evs:
        d = e.data or {}
        if e.kind == STATUS:
            if waiting is not None:
                f["waits"].append((waiting, e.at))
                waiting = None
            if d.get("status") == "waiting":
                waiting = e.at
            elif d.get("status") == "resolved":
                f["resolutions"].append(e.at)
        elif e.kind == OPENED:
            rules = tuple(str(r) for r in d.get("rules") or ())
        elif e.kind == CUSTOMER:
            f["customer_messages"].append(e.at)
        elif e.kind == REOPENED:
            f["reopens"].append(e.at)
        elif e.kind == ESCALATED:
            f["escalations"].append(Escalation(
                e.at, str(d.get("step", "")), str(d.get("reason", "")),
                timedelta(seconds=int(d.get("age_seconds") or 0)), bool(d.get("late"))))
        elif e.kind == REQUESTED:
            f["escalation_requests"].append(e.at)
        elif e.kind == "rating" or (e.kind == NOTE and d.get("what") == "rating"):
            f["ratings"].append((e.at, int(d.get("value") or 0)))
    if waiting is not None:
        f["waits"].append((waiting, None))
    return TicketRecord(
        t.id, t.created_at, t.requester, t.severity, t.category, t.owner_group, t.status,
        rules, responses=tuple(sent), referrals=tuple(refs),
        **{k: tuple(v) for k, v in f.items()})


def backlog(s: Session, as_of: datetime, oldest: int = 5) -> Backlog:
    """Open tickets by age band and severity, GROUP BY in SQL (one pass over the open
    tickets: the band is a CASE on the age)."""
    open_ = and_(Ticket.status.in_(OPEN), Ticket.created_at < as_of)
    bands: dict[str, dict[int, int]] = {name: {} for name, _ in AGE_BANDS}
    names = [name for name, _ in AGE_BANDS]
    band = case(*((Ticket.created_at > as_of - limit, i)
                  for i, (_, limit) in enumerate(AGE_BANDS) if limit is not None),
                else_=len(AGE_BANDS) - 1).label("band")
    total = 0
    for i, sev, k in s.execute(select(band, Ticket.severity, func.count()).where(open_)
                               .group_by(band, Ticket.severity)
                               .order_by(band, Ticket.severity)):
        bands[names[int(i)]][sev] = k
        total += k
    rows = s.execute(select(Ticket.id, Ticket.created_at, Ticket.severity, Ticket.owner_group)
                     .where(open_).order_by(Ticket.created_at, Ticket.id).limit(oldest))
    return Backlog(total, bands, tuple((r[0], r[1], r[2], r[3]) for r in rows))


def escalation_rows(s: Session, w: Window) -> list[EscalationRow]:
    """Escalations and customers' requests in the window (rare: a few per cent)."""
    opened = aliased(TicketEvent)
    rows = s.execute(
        select(E.ticket_id, E.kind, E.at, E.data, Ticket.requester, Ticket.category,
               opened.data.label("opened"))
        .join(Ticket, Ticket.id == E.ticket_id)
        .outerjoin(opened, and_(opened.ticket_id == E.ticket_id,
                                _kind(opened, OPENED, True)))
        .where(E.kind.in_((ESCALATED, REQUESTED)), _in(E.at, w)).order_by(E.at, E.id))
    out = []
    for r in rows:
        d = r.data or {}
        age = d.get("age_seconds")
        out.append(EscalationRow(
            r.ticket_id, r.requester, r.category, r.at, r.kind == REQUESTED,
            str(d.get("step", "")), str(d.get("reason", "")),
            None if age is None else timedelta(seconds=int(age)),
            tuple(str(x) for x in (r.opened or {}).get("rules") or ())))
    return out


def clocks(s: Session, w: Window) -> list[ClockRecord]:
    """Clocks decided in the window (met then, or due then and breached)."""
    if not has_clocks(s):
        return []
    c = CLOCKS.c
    rows = s.execute(select(CLOCKS).where(or_(
        and_(c.state == "met", _in(c.stopped_at, w)),
        and_(c.state == "breached", _in(c.due_at, w)))))
    return [ClockRecord(r.ticket_id, r.kind, r.severity, r.owner_group, r.started_at,
                        r.due_at, r.stopped_at, r.state, r.episode) for r in rows]


def referrals(s: Session, w: Window) -> list[ReferralRecord]:
    """Referrals made or accepted in the window, and every open one (missing ETAs,
    acceptances overdue)."""
    R = Referral
    rows = s.execute(select(R, Ticket.severity).join(Ticket, Ticket.id == R.ticket_id).where(
        or_(_in(R.created_at, w), _in(R.accepted_at, w),
            and_(R.ended_at.is_(None), R.created_at < w.end))))
    return [ReferralRecord(r.ticket_id, r.group, sev, r.created_at, r.accepted_at, r.eta,
                           r.next_update_due, r.ended_at) for r, sev in rows]


def rule_hits(s: Session, w: Window) -> Counter[str]:
    """Hits per rule in the window's ``opened`` events, the JSON list expanded in SQL."""
    if s.get_bind().dialect.name == "sqlite":
        q = text("SELECT j.value, count(*) FROM ticket_events e, json_each(e.data, '$.rules')"
                 " j WHERE e.kind = 'opened' AND e.at >= :a AND e.at < :b GROUP BY j.value")
    else:
        q = text("SELECT r, count(*) FROM ticket_events e, "
                 "json_array_elements_text(e.data::json -> 'rules') r "
                 "WHERE e.kind = 'opened' AND e.at >= :a AND e.at < :b GROUP BY r")
    q = q.bindparams(bindparam("a", type_=UTCDateTime()), bindparam("b", type_=UTCDateTime()))
    return Counter({str(k): int(v) for k, v in s.execute(q, {"a": w.start, "b": w.end})})


def mail_health(s: Session, w: Window) -> MailHealth:
    Q, Out = QuarantinedMessage, OutboxRow
    pending = s.execute(select(func.count(), func.min(Out.created_at))
                        .where(Out.status.in_(("pending", "sending")))).one()
    return MailHealth(
        quarantined=int(s.scalar(select(func.count()).where(_in(Q.created_at, w))) or 0),
        quarantine_waiting=int(s.scalar(select(func.count()).select_from(Q)
                                        .where(Q.released_at.is_(None))) or 0),
        failed=int(s.scalar(select(func.count()).select_from(E).where(
            E.kind == "delivery-failed", _in(E.at, w))) or 0),
        outbox_pending=int(pending[0] or 0), oldest_pending=pending[1],
        mailboxes=tuple(MailboxRecord(m, at) for m, at in s.execute(
            select(MailboxCheckpoint.mailbox, MailboxCheckpoint.updated_at)
            .order_by(MailboxCheckpoint.mailbox))))



def desks(s: Session, ids: set[int]) -> dict[int, str]:
    """The desk of each of ``ids`` not on the main mailbox (how the digest names them)."""
    out: dict[int, str] = {}
    for chunk in chunks(sorted(ids)):
        out.update({i: d for i, d in s.execute(select(Ticket.id, Ticket.desk).where(
            Ticket.id.in_(chunk), Ticket.desk.is_not(None))) if d is not None})
    return out
