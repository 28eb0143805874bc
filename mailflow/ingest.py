"""Fetched messages to committed tickets, events and queued mail: one transaction a batch.

The IMAP side hands over a batch; this module parses it (pure), gathers what linking
needs in a few indexed queries, decides per message, and writes everything with bulk
inserts, the mailbox checkpoint included, in one commit. Only after that commit does
the caller mark the messages processed on the server, so a crash anywhere leaves
either nothing done (the mail is fetched again) or everything done (the dedupe key
and the checkpoint make the second look a no-op).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailflow.autoresponse import is_own, suppress_reason
from mailflow.classify import Classification, Facts, RuleSet
from mailflow.config import Settings, format_duration
from mailflow.linking import (
    Action,
    LinkDecision,
    LinkFacts,
    LinkPolicy,
    TicketFacts,
    candidate_ticket_ids,
    decide,
    message_id_for,
    new_token,
    reply_address,
)
from mailflow.parse import Incoming, Unparseable, parse
from mailflow.store.db import insert_many, transaction
from mailflow.store.models import (
    Attachment,
    MailboxCheckpoint,
    OutboxRow,
    Participant,
    QuarantinedMessage,
    StoredMessage,
    Suppression,
    Ticket,
    TicketEvent,
)
from mailflow.tickets import EventKind, Status, event, ref

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    internaldate: datetime | None = None


@dataclass
class BatchResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    # UIDs whose effects are committed: safe to mark processed on the server.
    done_uids: list[int] = field(default_factory=list)
    new_outbox: int = 0
    opened: list[int] = field(default_factory=list)


@dataclass
class _Pending:
    """A ticket opened earlier in this batch, not yet inserted."""

    temp_id: int
    row: dict[str, Any]
    participants: set[str]


class Ingestor:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]):
        self.settings = settings
        self.sessions = sessions
        self.own = settings.all_own_addresses()
        self.policy = LinkPolicy(settings.support_address, self.own, settings.ticket_prefix,
                                 settings.reopen_window)

    # -- entry point -------------------------------------------------------------
    def ingest(self, mailbox: str, uidvalidity: int, batch: Sequence[Fetched],
               rules: RuleSet, now: datetime) -> BatchResult:
        """Prepare and commit one batch in this thread."""
        return self.commit(mailbox, uidvalidity, self.prepare(batch, rules, now), now)

    def prepare(self, batch: Sequence[Fetched], rules: RuleSet,
                now: datetime) -> list[Prepared]:
        return prepare_batch(batch, rules, now, self.settings.tz, self.own)

    def commit(self, mailbox: str, uidvalidity: int, prepared: Sequence[Prepared],
               now: datetime) -> BatchResult:
        """Everything that needs the database, in one transaction with the checkpoint."""
        with transaction(self.sessions) as s:
            result = _BatchWriter(self, s, mailbox, uidvalidity, now).write(prepared)
            if prepared:
                _advance_checkpoint(s, mailbox, uidvalidity,
                                    max(p.fetched.uid for p in prepared), now)
        return result


@dataclass(frozen=True)
class Prepared:
    """The half of ingesting a message that needs no database: parsed, classified and
    checked for automatic-mail markers. Plain, picklable data, so that it can be
    computed in a worker process while the previous batch is being written."""

    fetched: Fetched
    msg: Incoming | None
    error: str | None = None  # why it could not be parsed (then msg is None)
    classification: Classification | None = None
    suppress: str | None = None  # why no automatic reply may go to it (RFC 3834)


def prepare_one(f: Fetched, rules: RuleSet, now: datetime, tz: tzinfo,
                own: frozenset[str]) -> Prepared:
    try:
        msg = parse(f.raw)
    except Unparseable as exc:
        return Prepared(f, None, str(exc))
    except Exception as exc:
        log.exception("parser failed on uid %s", f.uid)
        return Prepared(f, None, f"parser error: {type(exc).__name__}: {exc}")
    received = f.internaldate or now
    # Classified up front even if linking later calls it a bounce: the rules are pure and
    # this may run on another core, where it costs the writer nothing.
    cls = rules.evaluate(Facts.of(msg, received.astimezone(tz)), trace=False)
    return Prepared(f, msg, None, cls, suppress_reason(msg, own))


def prepare_batch(batch: Sequence[Fetched], rules: RuleSet, now: datetime, tz: tzinfo,
                  own: frozenset[str]) -> list[Prepared]:
    return [prepare_one(f, rules, now, tz, own) for f in batch]


def _advance_checkpoint(s: Session, mailbox: str, uidvalidity: int, last_uid: int,
                        now: datetime) -> None:
    cp = s.get(MailboxCheckpoint, mailbox)
    if cp is None:
        s.add(MailboxCheckpoint(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=last_uid,
                                updated_at=now))
    elif cp.uidvalidity != uidvalidity:
        cp.uidvalidity, cp.last_uid, cp.updated_at = uidvalidity, last_uid, now
    else:
        cp.last_uid, cp.updated_at = max(cp.last_uid, last_uid), now


def _chunks(items: Sequence[Any], n: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class _BatchWriter:
    def __init__(self, ing: Ingestor, s: Session, mailbox: str, uidvalidity: int,
                 now: datetime):
        self.ing = ing
        self.st = ing.settings
        self.s = s
        self.mailbox = mailbox
        self.uidvalidity = uidvalidity
        self.now = now
        self.result = BatchResult()
        self.pending: dict[int, _Pending] = {}
        self.messages: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []
        self.events: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.participants: list[dict[str, Any]] = []
        self.quarantine: list[dict[str, Any]] = []
        self.suppress: dict[str, str] = {}
        self.ack_counts: Counter[str] = Counter()
        self.updates: dict[int, dict[str, Any]] = {}

    # -- lookups (few queries per batch, all indexed) ------------------------------
    def _known_keys(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(keys):
            found.update(self.s.scalars(select(StoredMessage.dedupe_key)
                                        .where(StoredMessage.dedupe_key.in_(chunk))))
            found.update(self.s.scalars(select(QuarantinedMessage.dedupe_key)
                                        .where(QuarantinedMessage.dedupe_key.in_(chunk))))
        return found

    def _facts(self, msgs: list[Incoming]) -> LinkFacts:
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
            ids |= candidate_ticket_ids(m, self.ing.policy)
        message_ids: dict[str, int] = {}
        sent: set[str] = set()
        mlist = sorted(mids)
        for chunk in _chunks(mlist):
            for mid, tid in self.s.execute(
                select(StoredMessage.message_id, StoredMessage.ticket_id)
                .where(StoredMessage.message_id.in_(chunk))
            ):
                if tid is not None:
                    message_ids.setdefault(mid, tid)
            for mid, tid in self.s.execute(
                select(OutboxRow.message_id, OutboxRow.ticket_id)
                .where(OutboxRow.message_id.in_(chunk))
            ):
                sent.add(mid)
                if tid is not None:
                    message_ids[mid] = tid
        ids |= set(message_ids.values())
        return LinkFacts(self._ticket_facts(ids), message_ids, frozenset(sent))

    def _ticket_facts(self, ids: set[int]) -> dict[int, TicketFacts]:
        out: dict[int, TicketFacts] = {}
        if not ids:
            return out
        parts: dict[int, set[str]] = {}
        for chunk in _chunks(sorted(ids)):
            for tid, addr in self.s.execute(
                select(Participant.ticket_id, Participant.address)
                .where(Participant.ticket_id.in_(chunk))
            ):
                parts.setdefault(tid, set()).add(addr)
            for t in self.s.execute(
                select(Ticket.id, Ticket.status, Ticket.reply_token, Ticket.closed_at)
                .where(Ticket.id.in_(chunk))
            ):
                out[t.id] = TicketFacts(t.id, t.status, t.reply_token, t.closed_at,
                                        frozenset(parts.get(t.id, ())))
        return out

    # -- the batch -------------------------------------------------------------------
    def write(self, prepared: Sequence[Prepared]) -> BatchResult:
        keys = [p.msg.dedupe_key if p.msg else _raw_key(p.fetched.raw) for p in prepared]
        known = self._known_keys(keys)
        good = [p.msg for p, k in zip(prepared, keys, strict=True)
                if p.msg is not None and k not in known]
        facts = self._facts(good)
        self.tickets = dict(facts.tickets)
        self.message_ids = dict(facts.message_ids)
        self.sent = facts.sent_ids
        self._load_ack_counts(good)
        seen_now: set[str] = set()
        for p, key in zip(prepared, keys, strict=True):
            self.result.done_uids.append(p.fetched.uid)
            if key in known or key in seen_now:
                self.result.outcomes["duplicate"] += 1
                continue
            seen_now.add(key)
            if p.msg is None:
                self._quarantine(p.fetched, key, p.error or "unparseable")
            else:
                self._one(p, p.msg)
        self._flush()
        return self.result

    def _one(self, p: Prepared, msg: Incoming) -> None:
        f = p.fetched
        facts = LinkFacts(self.tickets, self.message_ids, self.sent)
        d = decide(msg, facts, self.ing.policy, self.now)
        received = f.internaldate or self.now
        if d.action in (Action.NEW, Action.NEW_LINKED):
            tid = self._open(p, msg, d, received)
            self._store(tid, p, msg, "ticket")
        elif d.action in (Action.JOIN, Action.REOPEN):
            assert d.ticket_id is not None
            self._join(p, d, msg, received)
            self._store(d.ticket_id, p, msg, "ticket")
        elif d.action == Action.OWN_MAIL:
            self._store(d.ticket_id, p, msg, "own-mail")
            if d.ticket_id is not None:
                self.events.append(event(d.ticket_id, EventKind.OWN_MAIL, self.now,
                                         summary="a copy of our own mail came back; ignored"))
        elif d.action == Action.BOUNCE:
            self._bounce(d, p, msg)
        else:
            self._quarantine(f, msg.dedupe_key, d.reason, msg)
            return
        self.result.outcomes[str(d.action)] += 1

    # -- actions ---------------------------------------------------------------------
    def _open(self, p: Prepared, msg: Incoming, d: LinkDecision, received: datetime) -> int:
        temp = -(len(self.pending) + 1)
        cls = _classification(p)
        token = new_token()
        participants = {a for a in (msg.from_addr, *msg.to, *msg.cc)
                        if a and not is_own(a, self.ing.own)}
        row = {
            "subject": msg.subject[:2000],
            "requester": msg.from_addr,
            "status": str(Status.OPEN),
            "severity": cls.severity,
            "category": cls.category,
            "owner_group": cls.owner_group,
            "tags": list(cls.tags),
            "reply_token": token,
            "linked_ticket_id": d.linked_to,
            "rules_version": cls.version,
            "reopen_count": 0,
            "created_at": received,
            "updated_at": self.now,
            "last_customer_at": received,
        }
        self.pending[temp] = _Pending(temp, row, participants)
        self.tickets[temp] = TicketFacts(temp, str(Status.OPEN), token, None,
                                         frozenset(participants))
        if msg.message_id:
            self.message_ids[msg.message_id] = temp
        actor = msg.from_addr or "(unknown sender)"
        # One event for opening and classifying: the digest and SLA clocks read the
        # ticket's starting severity and owner from it (a third of ingest's event rows
        # were separate "classified" events: -10 % commit time without them).
        self.events.append(event(
            temp, EventKind.OPENED, received, actor,
            f"{d.reason}; severity {cls.severity}, {cls.category}, owner {cls.owner_group}"
            f" (rules {', '.join(cls.matched) or 'none matched: defaults'})",
            message_id=msg.message_id, severity=cls.severity, category=cls.category,
            owner_group=cls.owner_group, tags=list(cls.tags), rules=list(cls.matched),
            rules_version=cls.version))
        if d.linked_to is not None:
            self.events.append(event(temp, EventKind.LINKED, received, actor, d.reason,
                                     linked_to=d.linked_to))
        if not msg.from_valid:
            self.events.append(event(temp, EventKind.INVALID_SENDER, received,
                                     summary=f"sender address {msg.from_addr!r} is not valid; "
                                     "no mail will be sent to it"))
        self._maybe_ack(temp, token, p, msg, cls)
        self.result.opened.append(temp)
        return temp

    def _join(self, p: Prepared, d: LinkDecision, msg: Incoming, received: datetime) -> None:
        tid = d.ticket_id
        assert tid is not None
        actor = msg.from_addr or "(unknown sender)"
        upd = self.updates.setdefault(tid, {})
        upd["updated_at"] = self.now
        upd["last_customer_at"] = received
        if d.action == Action.REOPEN:
            upd["status"] = str(Status.OPEN)
            upd["reopen"] = upd.get("reopen", 0) + 1
            upd["resolved_at"] = None
            upd["closed_at"] = None
            self.events.append(event(tid, EventKind.REOPENED, received, actor, d.reason))
            t = self.tickets[tid]
            self.tickets[tid] = TicketFacts(t.id, str(Status.OPEN), t.reply_token, None,
                                            t.participants)
        self.events.append(event(tid, EventKind.CUSTOMER_MESSAGE, received, actor, d.reason,
                                 message_id=msg.message_id))
        # Re-classify: severity may rise with new information, never drop silently.
        cls = _classification(p)
        pending = self.pending.get(tid)
        if pending is not None:  # opened earlier in this very batch: not inserted yet
            self.updates.pop(tid, None)
            pending.row["last_customer_at"] = received
            if cls.severity < pending.row["severity"]:
                self.events.append(event(
                    tid, EventKind.SEVERITY_RAISED, self.now,
                    summary=f"severity {pending.row['severity']} -> {cls.severity} by rules "
                            f"{', '.join(cls.matched)}",
                    previous=pending.row["severity"], severity=cls.severity,
                    rules=list(cls.matched), rules_version=cls.version))
                pending.row["severity"] = cls.severity
            return
        upd["raise_to"] = min(upd.get("raise_to", 9), cls.severity)
        upd["raise_cls"] = cls

    def _maybe_ack(self, tid: int, token: str, p: Prepared, msg: Incoming,
                   cls: Classification) -> None:
        reason = p.suppress
        addr = msg.from_addr
        limit = self.st.acknowledgment.max_per_sender_per_hour
        if reason is None and addr in self.suppress:
            reason = f"{addr} is suppressed after a permanent delivery failure"
        if reason is None and self.ack_counts[addr] >= limit:
            reason = (f"already {self.ack_counts[addr]} acknowledgments to {addr} in the last "
                      f"hour (limit {limit}): autoresponder loop protection")
        if reason is not None:
            self.events.append(event(tid, EventKind.ACK_SKIPPED, self.now, summary=reason))
            return
        self.ack_counts[addr] += 1
        level = self.st.severities[cls.severity]
        self.outbox.append({
            "ticket_id": tid,
            "kind": "acknowledgment",
            "dedupe_key": None,
            "mail_from": self.st.support_address,
            "recipient": addr,
            "message_id": None,  # needs the ticket number: set in _flush
            "template": "acknowledgment",
            "context": {
                "ticket": {
                    "subject": msg.subject,
                    "severity": cls.severity,
                    "severity_label": level.label,
                    "first_response": _human(level.first_response),
                    "category": cls.category,
                    "owner_group": cls.owner_group,
                    "status": str(Status.OPEN),
                },
                "customer": {"name": msg.from_name, "address": addr},
                "message": {"text": msg.new_text, "subject": msg.subject},
                "support_address": self.st.support_address,
                "_envelope": {
                    "in_reply_to": msg.message_id,
                    "references": [*msg.references[-9:], msg.message_id]
                    if msg.message_id else list(msg.references[-10:]),
                    "token": token,
                },
            },
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": self.now,
            "created_at": self.now,
        })
        self.events.append(event(tid, EventKind.ACK_QUEUED, self.now, summary=f"to {addr}"))

    def _bounce(self, d: LinkDecision, p: Prepared, msg: Incoming) -> None:
        self._store(d.ticket_id, p, msg, "bounce")
        report = msg.report
        status = report.status if report else ""
        rcpts = list(report.recipients) if report else []
        if status.startswith("5"):
            for r in rcpts:
                self.suppress[r] = f"bounce {status}: {report.diagnostic if report else ''}"
        if d.ticket_id is not None:
            self.events.append(event(
                d.ticket_id, EventKind.DELIVERY_FAILED, self.now,
                summary=f"delivery of our mail to {', '.join(rcpts) or 'a recipient'} failed "
                        f"({status or 'no status'}): {report.diagnostic if report else ''}"
                        .strip(),
                recipients=rcpts, status=status, message_id=msg.message_id))

    def _quarantine(self, f: Fetched, key: str, reason: str,
                    msg: Incoming | None = None) -> None:
        log.warning("quarantined %s uid %s: %s", self.mailbox, f.uid, reason)
        self.quarantine.append({"mailbox": self.mailbox, "uidvalidity": self.uidvalidity,
                                "uid": f.uid, "dedupe_key": key, "reason": reason,
                                "raw": f.raw, "created_at": self.now})
        self.result.outcomes["quarantined"] += 1

    def _store(self, tid: int | None, p: Prepared, msg: Incoming, disposition: str) -> None:
        f = p.fetched
        flags = []
        if not msg.from_valid:
            flags.append("invalid-from")
        if msg.html_only:
            flags.append("html-only")
        if msg.defects:
            flags.append("defects:" + ",".join(msg.defects[:5]))
        if p.suppress:
            flags.append("automatic")
        atts = []
        for a in msg.attachments:
            kept = a.size <= self.st.max_attachment_size
            atts.append({"filename": a.filename[:500], "content_type": a.content_type[:255],
                         "size": a.size, "kept": kept})
            if not kept and tid is not None:
                self.events.append(event(
                    tid, EventKind.ATTACHMENT_TOO_LARGE, self.now,
                    summary=f"attachment {a.filename or a.content_type} ({a.size} bytes) is "
                            f"larger than the limit of {self.st.max_attachment_size} bytes; "
                            "it is kept only inside the raw message"))
        row = {
            "ticket_id": tid,
            "direction": "in",
            "disposition": disposition,
            "mailbox": self.mailbox,
            "uidvalidity": self.uidvalidity,
            "uid": f.uid,
            "message_id": msg.message_id[:998] if msg.message_id else None,
            "dedupe_key": msg.dedupe_key,
            "in_reply_to": msg.in_reply_to,
            "references": list(msg.references[-50:]),
            "from_addr": msg.from_addr[:320],
            "from_name": msg.from_name,
            "to_addrs": list(msg.to),
            "cc_addrs": list(msg.cc),
            "subject": msg.subject,
            "sent_at": msg.date,
            "received_at": f.internaldate or self.now,
            "new_text": msg.new_text,
            "body_text": None if msg.text.strip() == msg.new_text.strip() else msg.text,
            "flags": flags,
            "raw": msg.raw,
        }
        self.messages.append((tid if tid is not None else 0, row, atts))

    def _load_ack_counts(self, msgs: list[Incoming]) -> None:
        senders = sorted({m.from_addr for m in msgs if m.from_addr})
        since = self.now - timedelta(hours=1)
        for chunk in _chunks(senders):
            for addr, n in self.s.execute(
                select(OutboxRow.recipient, func.count())
                .where(OutboxRow.recipient.in_(chunk), OutboxRow.kind == "acknowledgment",
                       OutboxRow.created_at >= since)
                .group_by(OutboxRow.recipient)
            ):
                self.ack_counts[addr] = n
            self.suppress.update(
                (a, r) for a, r in self.s.execute(
                    select(Suppression.address, Suppression.reason)
                    .where(Suppression.address.in_(chunk)))
            )

    # -- writing -----------------------------------------------------------------------
    def _flush(self) -> None:
        s = self.s
        real: dict[int, int] = {}
        if self.pending:
            pend = list(self.pending.values())
            # Plain executemany, then the new ids by the unique token: SQLite cannot
            # return ids in parameter order and would fall back to a row at a time.
            insert_many(s, Ticket, [p.row for p in pend])
            by_token: dict[str, int] = {}
            for chunk in _chunks([p.row["reply_token"] for p in pend]):
                by_token.update((tok, tid) for tid, tok in s.execute(
                    select(Ticket.id, Ticket.reply_token).where(Ticket.reply_token.in_(chunk))))
            real = {p.temp_id: by_token[p.row["reply_token"]] for p in pend}
            self.result.opened = [real[t] for t in self.result.opened]
            rows = [{"ticket_id": real[p.temp_id], "address": a,
                     "role": "requester" if a == p.row["requester"] else "cc"}
                    for p in pend for a in sorted(p.participants)]
            if rows:
                insert_many(s, Participant, rows)

        def fix(tid: int | None) -> int | None:
            return real.get(tid, tid) if tid is not None and tid < 0 else tid

        self._apply_updates({fix(t) or t: u for t, u in self.updates.items()})
        if self.messages:
            msg_rows = []
            for _, row, _atts in self.messages:
                row["ticket_id"] = fix(row["ticket_id"])
                msg_rows.append(row)
            insert_many(s, StoredMessage, msg_rows)
            with_atts = [(row["dedupe_key"], atts) for _, row, atts in self.messages if atts]
            pk_of: dict[str, int] = {}
            for chunk in _chunks([k for k, _ in with_atts]):
                pk_of.update((k, pk) for pk, k in s.execute(
                    select(StoredMessage.id, StoredMessage.dedupe_key)
                    .where(StoredMessage.dedupe_key.in_(chunk))))
            att_rows = [dict(a, message_pk=pk_of[k]) for k, atts in with_atts for a in atts]
            if att_rows:
                insert_many(s, Attachment, att_rows)
        if self.outbox:
            for row in self.outbox:
                tid = fix(row["ticket_id"])
                row["ticket_id"] = tid
                env = row["context"]["_envelope"]
                row["message_id"] = message_id_for(tid, env["token"], self.st.domain)
                row["dedupe_key"] = f"ack:{tid}"
                row["context"]["ticket"]["ref"] = ref(self.st.ticket_prefix, tid)
                row["context"]["reply_address"] = reply_address(self.st.support_address, tid,
                                                                env["token"])
            insert_many(s, OutboxRow, self.outbox)
            self.result.new_outbox = len(self.outbox)
        if self.events:
            for e in self.events:
                e["ticket_id"] = fix(e["ticket_id"])
            insert_many(s, TicketEvent, self.events)
        if self.quarantine:
            insert_many(s, QuarantinedMessage, self.quarantine)
        for addr, reason in self.suppress.items():
            if s.get(Suppression, addr) is None:
                s.add(Suppression(address=addr, reason=reason[:2000], created_at=self.now))

    def _apply_updates(self, updates: dict[int, dict[str, Any]]) -> None:
        """One SELECT and one executemany UPDATE for every ticket the batch touched."""
        if not updates:
            return
        current: dict[int, tuple[int, int]] = {}
        for chunk in _chunks(sorted(updates)):
            current.update((r.id, (r.severity, r.reopen_count)) for r in self.s.execute(
                select(Ticket.id, Ticket.severity, Ticket.reopen_count)
                .where(Ticket.id.in_(chunk))))
        rows: list[dict[str, Any]] = []
        for tid, upd in updates.items():
            if tid not in current:
                continue  # opened in this batch: its insert already has the latest values
            severity, reopen_count = current[tid]
            reopen = upd.pop("reopen", 0)
            raise_to = upd.pop("raise_to", 9)
            cls: Classification | None = upd.pop("raise_cls", None)
            row: dict[str, Any] = {"id": tid, "reopen_count": reopen_count + reopen,
                                   "severity": severity, **upd}
            row.setdefault("status", None)
            if raise_to < severity and cls is not None:
                row["severity"] = raise_to
                self.events.append(event(
                    tid, EventKind.SEVERITY_RAISED, self.now,
                    summary=f"severity {severity} -> {raise_to} by rules "
                            f"{', '.join(cls.matched) or '(defaults)'}",
                    previous=severity, severity=raise_to, rules=list(cls.matched),
                    rules_version=cls.version))
            rows.append(row)
        # Rows with and without a reopen carry different columns: group by key set so
        # each executemany is uniform.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            if row["status"] is None:
                del row["status"]
            groups.setdefault(tuple(sorted(row)), []).append(row)
        for group in groups.values():
            self.s.execute(update(Ticket), group)


def _classification(p: Prepared) -> Classification:
    assert p.classification is not None, "prepare_one classifies every parsed message"
    return p.classification


def _raw_key(raw: bytes) -> str:
    return "raw:" + hashlib.sha256(raw).hexdigest()[:60]


def _human(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return format_duration(td)

