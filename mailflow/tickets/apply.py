"""The one writer: effects in, rows out, in the caller's transaction.

Every change to a ticket, every event, every outbox row and every suppression is
written here and nowhere else, so that a referral, a tier command, an escalation step
and a CLI action leave the same trail as ingest does. The caller owns the transaction
(ingest commits the batch with its mailbox checkpoint; the CLI commits one action).

Writes are grouped: one executemany per table and key set, which is what keeps ingest
at thousands of messages a second. Counters and severities are changed in SQL
(``reopen_count = reopen_count + 1``, ``severity = min(severity, :new)``), so two
workers applying to the same ticket at once lose no update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, case, delete, func, select
from sqlalchemy.orm import Session

from mailflow.store.db import chunks, insert_ignore, insert_many
from mailflow.store.models import (
    Attachment,
    OutboxRow,
    Participant,
    QuarantinedMessage,
    StoredMessage,
    Suppression,
    Ticket,
    TicketEvent,
)
from mailflow.tickets import (
    CUSTOMER_KINDS,
    RESPONSE_KINDS,
    EventKind,
    OutboxKind,
    OutboxStatus,
    Status,
    Writer,
    event,
)
from mailflow.tickets.effects import (
    AcceptReferral,
    AddMessage,
    Effect,
    EndReferrals,
    LiftSuppression,
    MailDropped,
    MailFailed,
    MailRetry,
    MailSent,
    Note,
    OpenTicket,
    Quarantine,
    QueueMail,
    RecordCaseRef,
    RecordRating,
    Refer,
    Reopen,
    Schedule,
    SetEta,
    SetOwner,
    SetSeverity,
    SetStatus,
    SkipAck,
    StaffAnswer,
    SuppressAddress,
)
from mailflow.tickets.outbox_rows import DeskIdentity, OutboxWrites
from mailflow.tickets.referral_rows import ReferralWrites
from mailflow.tickets.rows import message_row, outbox_row

# DeclarativeBase types __table__ as FromClause; these are Tables (update() needs one).
_T = cast(Table, Ticket.__table__)
_O = cast(Table, OutboxRow.__table__)


@dataclass(frozen=True)
class ApplyContext:
    now: datetime
    support_address: str  # the main mailbox's; tickets of other desks use theirs
    domain: str
    prefix: str
    tz_name: str = "UTC"  # times in a referral's history are shown in it
    # The further mailboxes (``mailboxes:``) by desk name: a ticket's mail goes out from
    # and refers to the desk it came in on, whoever queues it (ingest, the scheduler,
    # the CLI). Tickets of the main mailbox have no desk name.
    desks: Mapping[str, DeskIdentity] = field(default_factory=dict)
    desk: str | None = None  # the desk tickets opened in this apply belong to


@dataclass
class Applied:
    ids: dict[int, int] = field(default_factory=dict)  # OpenTicket key -> ticket id
    opened: list[int] = field(default_factory=list)
    queued: int = 0  # outbox rows written
    quarantined: int = 0


def apply(s: Session, effects: Iterable[Effect], ctx: ApplyContext) -> Applied:
    return _Writer(s, ctx).run(effects)


class _Writer:
    def __init__(self, s: Session, ctx: ApplyContext):
        self.s = s
        self.ctx = ctx
        self.now = ctx.now
        self.new: dict[int, dict[str, Any]] = {}  # key -> ticket row not yet inserted
        self.participants: dict[int, tuple[str, ...]] = {}
        self.tokens: dict[int, str] = {}  # key -> reply token of tickets opened here
        self.columns: dict[int, dict[str, Any]] = {}  # ticket -> plain column updates
        self.reopens: dict[int, int] = {}
        self.raises: dict[int, int] = {}  # ticket -> lowest severity asked for
        self.responded: dict[int, datetime] = {}
        self.events: list[dict[str, Any]] = []
        self.messages: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        self.outbox: list[tuple[QueueMail, dict[str, Any]]] = []
        self.quarantine: list[dict[str, Any]] = []
        self.suppress: dict[str, str] = {}
        self.outbox_updates: list[dict[str, Any]] = []
        self.unsuppress: set[str] = set()
        self.schedule: dict[int, datetime | None] = {}
        self.refs = ReferralWrites()

    # -- collect ------------------------------------------------------------------------
    def run(self, effects: Iterable[Effect]) -> Applied:
        for e in effects:
            self._collect(e)
        return self._write()

    def _cols(self, ticket: int) -> dict[str, Any]:
        """Plain column updates: folded into the insert for a ticket opened here."""
        if ticket < 0:
            return self.new[ticket]
        cols = self.columns.setdefault(ticket, {})
        cols["updated_at"] = self.now
        cols["next_due_at"] = self.now  # the scheduler recomputes its clocks
        return cols

    def _event(self, ticket: int, kind: EventKind, summary: str, actor: str,
               at: datetime | None = None, **data: Any) -> None:
        self.events.append(event(ticket, kind, at or self.now, actor, summary, **data))

    def _collect(self, e: Effect) -> None:
        match e:
            case OpenTicket():
                self._open(e)
            case AddMessage():
                self._message(e)
            case Reopen():
                cols = self._cols(e.ticket)
                cols.update(status=str(Status.OPEN), resolved_at=None, closed_at=None)
                if e.ticket < 0:
                    cols["reopen_count"] += 1
                else:
                    self.reopens[e.ticket] = self.reopens.get(e.ticket, 0) + 1
                self._event(e.ticket, EventKind.REOPENED, e.reason, e.actor, e.at)
            case SetSeverity():
                if e.ticket < 0:
                    row = self.new[e.ticket]
                    row["severity"] = (min(row["severity"], e.severity) if e.raise_only
                                       else e.severity)
                elif e.raise_only:
                    self._cols(e.ticket)
                    self.raises[e.ticket] = min(self.raises.get(e.ticket, e.severity), e.severity)
                else:
                    self._cols(e.ticket)["severity"] = e.severity
                self._event(e.ticket, EventKind.SEVERITY_RAISED, e.reason, e.actor,
                            previous=e.previous, severity=e.severity, rules=list(e.rules),
                            rules_version=e.rules_version)
            case SetStatus():
                cols = self._cols(e.ticket)
                cols["status"] = str(e.status)
                if e.status == Status.RESOLVED:
                    cols["resolved_at"] = self.now
                elif e.status == Status.CLOSED:
                    cols["closed_at"] = self.now
                self._event(e.ticket, EventKind.STATUS_CHANGED, e.reason, e.actor,
                            status=str(e.status), previous=e.previous)
            case SetOwner():
                self._cols(e.ticket)["owner_group"] = e.group
                self._event(e.ticket, EventKind.OWNER_CHANGED, e.reason, e.actor,
                            owner_group=e.group, previous=e.previous)
            case QueueMail():
                self._queue(e)
            case SkipAck():
                self._event(e.ticket, EventKind.ACK_SKIPPED, e.reason, "mailflow")
            case SuppressAddress():
                self.suppress.setdefault(e.address, e.reason)
            case Quarantine():
                self.quarantine.append({
                    "mailbox": e.mailbox, "uidvalidity": e.uidvalidity, "uid": e.fetched.uid,
                    "dedupe_key": e.key, "reason": e.reason, "raw": e.fetched.raw,
                    "created_at": self.now})
            case Note():
                self._event(e.ticket, e.kind, e.summary, e.actor, e.at, **dict(e.data))
            case MailSent():
                self.outbox_updates.append({
                    "oid": e.outbox_id, "status": str(OutboxStatus.SENT), "sent_at": self.now,
                    "lease_until": None, "last_error": None})
                if e.ticket is not None:
                    self._event(e.ticket, EventKind.MAIL_SENT, f"{e.kind} to {e.recipient}",
                                "mailflow", outbox_id=e.outbox_id, message_id=e.message_id,
                                server_answer=e.answer[:200])
                    if e.kind in RESPONSE_KINDS:
                        self.responded.setdefault(e.ticket, self.now)
                        self._cols(e.ticket)  # a response stops a clock: recompute
            case MailFailed():
                self.outbox_updates.append({
                    "oid": e.outbox_id, "status": str(OutboxStatus.FAILED),
                    "lease_until": None, "last_error": e.reason[:2000]})
                if e.suppress and e.kind in CUSTOMER_KINDS:
                    self.suppress.setdefault(e.recipient, e.reason)
                if e.ticket is not None:
                    self._event(e.ticket, EventKind.DELIVERY_FAILED,
                                f"{e.kind} to {e.recipient}: {e.reason}", "mailflow",
                                outbox_id=e.outbox_id, recipient=e.recipient)
            case Refer() | AcceptReferral() | SetEta() | RecordCaseRef() | EndReferrals():
                self._referral(e)
            case RecordRating():
                self._event(e.ticket, EventKind.NOTE, f"rated {e.value} of 5"
                            + (f": {e.comment}" if e.comment else ""), e.actor, e.at,
                            what="rating", value=e.value, comment=e.comment)
            case MailRetry():
                upd = {"oid": e.outbox_id, "status": str(OutboxStatus.PENDING),
                       "lease_until": None, "last_error": e.reason[:2000],
                       "next_attempt_at": e.next_attempt_at}
                if e.fresh:
                    upd["attempts"] = 0
                self.outbox_updates.append(upd)
            case MailDropped():
                self.outbox_updates.append({
                    "oid": e.outbox_id, "status": str(OutboxStatus.DROPPED),
                    "lease_until": None, "last_error": e.reason[:2000]})
                if e.ticket is not None:
                    self._event(e.ticket, EventKind.NOTE, f"outbox {e.outbox_id} dropped: "
                                f"{e.reason}", e.actor, what="mail-dropped",
                                outbox_id=e.outbox_id)
            case LiftSuppression():
                self.unsuppress.add(e.address)
                self.suppress.pop(e.address, None)
            case Schedule():
                self.schedule[e.ticket] = e.due
            case StaffAnswer():
                self._event(e.ticket, EventKind.STAFF_ANSWER,
                            f"{e.actor} answered from their mail client (Sent folder)",
                            e.actor, e.at, message_id=e.message_id)
                if e.ticket > 0:
                    self.responded.setdefault(e.ticket, e.at)
                    self._cols(e.ticket)  # a response stops a clock: recompute

    def _referral(self, e: Refer | AcceptReferral | SetEta | RecordCaseRef | EndReferrals
                  ) -> None:
        self.refs.collect(e, self.now, self._event)

    def _open(self, e: OpenTicket) -> None:
        self.new[e.key] = {
            "subject": e.subject, "requester": e.requester, "status": str(Status.OPEN),
            "severity": e.severity, "category": e.category, "owner_group": e.owner_group,
            "tags": list(e.tags), "reply_token": e.reply_token, "linked_ticket_id": e.linked_to,
            "rules_version": e.rules_version, "reopen_count": 0, "created_at": e.created_at,
            "updated_at": self.now, "last_customer_at": e.created_at,
            "next_due_at": self.now, "desk": self.ctx.desk,
        }
        self.participants[e.key] = e.participants
        self.tokens[e.key] = e.reply_token
        # One event for opening and classifying: the digest and SLA clocks read the
        # ticket's starting severity and owner from it.
        self._event(
            e.key, EventKind.OPENED,
            f"{e.reason}; severity {e.severity}, {e.category}, owner {e.owner_group}"
            f" (rules {', '.join(e.rules) or 'none matched: defaults'})", e.actor,
            e.created_at, message_id=e.message_id, severity=e.severity, category=e.category,
            owner_group=e.owner_group, tags=list(e.tags), rules=list(e.rules),
            rules_version=e.rules_version)

    def _message(self, e: AddMessage) -> None:
        received = e.fetched.internaldate or self.now
        if e.ticket is not None and e.disposition == "ticket" and e.writer in (
                Writer.CUSTOMER, Writer.UNKNOWN):
            self._cols(e.ticket)["last_customer_at"] = received
        self.messages.append(message_row(e, received))

    def _queue(self, e: QueueMail) -> None:
        r = e.request
        self.outbox.append((e, outbox_row(r, self.ctx.support_address, self.now)))
        if r.ticket is not None and e.event:
            kind = EventKind.ACK_QUEUED if r.kind == OutboxKind.ACKNOWLEDGMENT \
                else EventKind.MAIL_QUEUED
            data: dict[str, Any] = ({} if kind == EventKind.ACK_QUEUED
                                    else {"template": r.template})
            self._event(r.ticket, kind, e.summary or f"{r.kind} to {r.recipient}", "mailflow",
                        **data)

    # -- write ----------------------------------------------------------------------------
    def _write(self) -> Applied:
        out = Applied()
        s = self.s
        real = self._insert_tickets(out)

        def fix(tid: int | None) -> int | None:
            return real[tid] if tid is not None and tid < 0 else tid

        self._update_tickets()
        if self.messages:
            for row, _ in self.messages:
                row["ticket_id"] = fix(row["ticket_id"])
            insert_many(s, StoredMessage, [row for row, _ in self.messages])
            with_atts = [(row["dedupe_key"], atts) for row, atts in self.messages if atts]
            pk_of: dict[str, int] = {}
            for chunk in chunks([k for k, _ in with_atts]):
                pk_of.update((k, pk) for pk, k in s.execute(
                    select(StoredMessage.id, StoredMessage.dedupe_key)
                    .where(StoredMessage.dedupe_key.in_(chunk))))
            att_rows = [dict(a, message_pk=pk_of[k]) for k, atts in with_atts for a in atts]
            insert_many(s, Attachment, att_rows)
        self.refs.write(s, fix, self.now)
        if self.outbox:
            OutboxWrites(s, self.ctx).write(
                self.outbox, {real[k]: r["desk"] for k, r in self.new.items()},
                {m["dedupe_key"]: m["raw"] for m, _ in self.messages}, fix)
            out.queued = len(self.outbox)
        if self.events:
            for ev in self.events:
                ev["ticket_id"] = fix(ev["ticket_id"])
            insert_many(s, TicketEvent, self.events)
        if self.quarantine:
            insert_many(s, QuarantinedMessage, self.quarantine)
            out.quarantined = len(self.quarantine)
        if self.unsuppress:
            s.execute(delete(Suppression).where(Suppression.address.in_(self.unsuppress)))
        if self.suppress:
            insert_ignore(s, Suppression, [
                {"address": a, "reason": r[:2000], "created_at": self.now}
                for a, r in self.suppress.items()])
        if self.outbox_updates:
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for u in self.outbox_updates:
                groups.setdefault(tuple(sorted(u)), []).append(u)
            for keys, rows in groups.items():
                stmt = _O.update().where(_O.c.id == bindparam("oid")).values(
                    {k: bindparam(k) for k in keys if k != "oid"})
                s.connection().execute(stmt, rows)
        return out

    def _insert_tickets(self, out: Applied) -> dict[int, int]:
        real: dict[int, int] = {}
        if not self.new:
            return real
        s = self.s
        # Plain executemany, then the new ids by the unique token: SQLite cannot return
        # ids in parameter order and would fall back to a row at a time.
        insert_many(s, Ticket, list(self.new.values()))
        by_token: dict[str, int] = {}
        for chunk in chunks(list(self.tokens.values())):
            by_token.update((tok, tid) for tid, tok in s.execute(
                select(Ticket.id, Ticket.reply_token).where(Ticket.reply_token.in_(chunk))))
        real = {key: by_token[tok] for key, tok in self.tokens.items()}
        out.ids = real
        out.opened = [real[k] for k in self.new]
        insert_many(s, Participant, [
            {"ticket_id": real[k], "address": a,
             "role": "requester" if a == self.new[k]["requester"] else "cc"}
            for k, addrs in self.participants.items() for a in addrs])
        return real

    def _update_tickets(self) -> None:
        conn = self.s.connection()
        tid: BindParameter[Any] = bindparam("tid")
        touched = sorted({*self.reopens, *self.raises, *self.responded, *self.columns})
        if touched and conn.dialect.name == "postgresql":
            # Row locks in one order (ticket id) before any update: two writers touching
            # the same tickets in another order wait for each other instead of
            # deadlocking. NO KEY UPDATE, as an UPDATE takes it: inserts of events that
            # merely reference a ticket are not blocked.
            for chunk in chunks(touched):
                conn.execute(select(_T.c.id).where(_T.c.id.in_(chunk)).order_by(_T.c.id)
                             .with_for_update(key_share=True))
        if self.reopens:
            conn.execute(_T.update().where(_T.c.id == tid).values(
                reopen_count=_T.c.reopen_count + bindparam("n")),
                [{"tid": t, "n": n} for t, n in self.reopens.items()])
        if self.raises:
            new: BindParameter[Any] = bindparam("sev")
            conn.execute(_T.update().where(_T.c.id == tid).values(
                severity=case((_T.c.severity > new, new), else_=_T.c.severity)),
                [{"tid": t, "sev": v} for t, v in self.raises.items()])
        if self.responded:
            conn.execute(_T.update().where(_T.c.id == tid).values(
                first_response_at=func.coalesce(_T.c.first_response_at, bindparam("at"))),
                [{"tid": t, "at": at} for t, at in self.responded.items()])
        for t, due in self.schedule.items():
            # The scheduler's own verdict wins over "look again now", unless this very
            # apply changed the ticket (then its clocks must be computed again).
            if t in self.columns and due is not None and due > self.now:
                continue
            self.columns.setdefault(t, {})["next_due_at"] = due
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for t, cols in self.columns.items():
            row = {"tid": t, **{f"v_{k}": v for k, v in cols.items()}}
            groups.setdefault(tuple(sorted(cols)), []).append(row)
        for keys, rows in groups.items():
            conn.execute(_T.update().where(_T.c.id == tid).values(
                {k: bindparam(f"v_{k}", type_=_T.c[k].type) for k in keys}), rows)
