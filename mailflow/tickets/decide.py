"""What an incoming message does to the tickets: pure, over what the store knows.

:func:`decide_batch` turns a batch of prepared messages plus the store's facts and
``now`` into effects (:mod:`mailflow.tickets.effects`), one list per message. It reads
no clock and touches no database, so every case (new, join, reopen, new-linked, own
mail, bounce, auto-reply, acknowledgment limit, suppressed address) is a unit test.

Within a batch, each decision sees the ones before it: a ticket opened by message 3
is joined by message 7, and a reply to message 7 (which only *joined* a ticket) threads
to it too; an acknowledgment queued for a sender counts against that sender's limit for
the rest of the batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from mailflow.authorise import Writer as Author
from mailflow.autoresponse import is_own
from mailflow.classify import Classification
from mailflow.commands import parse_rating
from mailflow.linking import (
    Action,
    LinkDecision,
    LinkFacts,
    TicketFacts,
    decide,
    new_token,
)
from mailflow.parse import Incoming
from mailflow.prepare import Prepared
from mailflow.tickets import SYSTEM, EventKind, OutboxKind, Status, Writer
from mailflow.tickets.effects import (
    AddMessage,
    Effect,
    MailRequest,
    Note,
    OpenTicket,
    Quarantine,
    QueueMail,
    RecordRating,
    Reopen,
    SetSeverity,
    SetStatus,
    SkipAck,
    SuppressAddress,
)
from mailflow.tickets.inputs import IngestPolicy, SeverityPromise, Source, StoreFacts
from mailflow.tickets.referral import (
    TierPolicy,
    at_intake,
    author_of,
    referable,
    relay,
    staff_reply,
    writer_for,
)
from mailflow.tickets.sentfolder import staff_answer
from mailflow.tickets.wording import plain_subject

__all__ = ["IngestPolicy", "MessageDecision", "SeverityPromise", "Source", "StoreFacts",
           "decide_batch", "writer_of"]

# The tag a rule sets on customer mail that asks for escalation (rules/classify.yaml).
ESCALATION_REQUEST_TAG = "escalation-request"

# RFC 5321 caps a path at 256 octets: a longer "address" can receive no mail and is no
# participant (the message's raw bytes and Cc list keep it).
MAX_ADDRESS = 254


@dataclass(frozen=True)
class MessageDecision:
    uid: int
    outcome: str  # new, join, reopen, ..., duplicate, quarantined
    effects: tuple[Effect, ...]


def decide_batch(prepared: Sequence[Prepared], facts: StoreFacts, policy: IngestPolicy,
                 source: Source, now: datetime,
                 token: Callable[[], str] = new_token) -> list[MessageDecision]:
    """``token`` makes new tickets' reply tokens: random in use, fixed in tests."""
    return _Batch(facts, policy, source, now, token).run(prepared)


def writer_of(addr: str, ticket: TicketFacts | None, policy: IngestPolicy) -> Writer:
    role = policy.staff.get(addr)
    if role is not None:
        return role
    if ticket is None or addr in ticket.participants:
        return Writer.CUSTOMER
    return Writer.UNKNOWN


class _Batch:
    """The decisions of one batch: a private fold over a view that each decision
    updates for the next (tickets opened so far, Message-IDs seen, acks counted)."""

    def __init__(self, facts: StoreFacts, policy: IngestPolicy, source: Source,
                 now: datetime, token: Callable[[], str]):
        self.policy = policy
        self.new_token = token
        self.source = source
        self.now = now
        self.known = facts.known_keys
        self.tickets: dict[int, TicketFacts] = dict(facts.link.tickets)
        self.message_ids: dict[str, int] = dict(facts.link.message_ids)
        self.sent = facts.link.sent_ids
        self.case_refs = facts.link.case_refs
        self.ack_counts: Counter[str] = Counter(facts.ack_counts)
        self.suppressed: dict[str, str] = dict(facts.suppressed)
        self.next_key = -1
        self.tier = TierPolicy(policy.support_address, policy.groups, policy.tz,
                               {n: s.label for n, s in policy.severities.items()})

    def run(self, prepared: Sequence[Prepared]) -> list[MessageDecision]:
        out: list[MessageDecision] = []
        seen: set[str] = set()
        for p in prepared:
            key = p.key
            if key in self.known or key in seen:
                out.append(MessageDecision(p.fetched.uid, "duplicate", ()))
                continue
            seen.add(key)
            if p.msg is None:
                out.append(MessageDecision(p.fetched.uid, "quarantined", (
                    self._quarantine(p, key, p.error or "unparseable"),)))
                continue
            outcome, effects = self._one(p, p.msg)
            out.append(MessageDecision(p.fetched.uid, outcome, tuple(effects)))
        return out

    def _quarantine(self, p: Prepared, key: str, reason: str) -> Quarantine:
        return Quarantine(p.fetched, key, reason, self.source.mailbox, self.source.uidvalidity)

    def _one(self, p: Prepared, msg: Incoming) -> tuple[str, list[Effect]]:
        if self.source.role == "sent":
            return staff_answer(p, msg, self.tickets, self.message_ids, self.policy.link,
                                self.source.mailbox, self.source.uidvalidity,
                                self.policy.max_attachment_size)
        d = decide(msg, LinkFacts(self.tickets, self.message_ids, self.sent, self.case_refs),
                   self.policy.link, self.now)
        received = p.fetched.internaldate or self.now
        fx: list[Effect] = []
        if d.action in (Action.NEW, Action.NEW_LINKED):
            tid = self._open(p, msg, d, received, fx)
            self._store(tid, p, msg, "ticket", Writer.CUSTOMER, fx)
        elif d.action in (Action.JOIN, Action.REOPEN):
            assert d.ticket_id is not None
            self._join(p, msg, d, received, fx)
        elif d.action == Action.OWN_MAIL:
            self._store(d.ticket_id, p, msg, "own-mail", Writer.UNKNOWN, fx)
            if d.ticket_id is not None:
                fx.append(Note(d.ticket_id, EventKind.OWN_MAIL,
                               "a copy of our own mail came back; ignored"))
        elif d.action == Action.BOUNCE:
            self._bounce(p, msg, d, fx)
        else:
            return "quarantined", [self._quarantine(p, msg.dedupe_key, d.reason)]
        return str(d.action), fx

    # -- actions ----------------------------------------------------------------------
    def _open(self, p: Prepared, msg: Incoming, d: LinkDecision, received: datetime,
              fx: list[Effect]) -> int:
        key = self.next_key
        self.next_key -= 1
        cls = _classification(p)
        token = self.new_token()
        participants = tuple(sorted({a for a in (msg.from_addr, *msg.to, *msg.cc)
                                     if a and len(a) <= MAX_ADDRESS
                                     and not is_own(a, self.policy.link.own_addresses)}))
        actor = msg.from_addr or "(unknown sender)"
        fx.append(OpenTicket(
            key=key, subject=msg.subject[:2000], requester=msg.from_addr[:MAX_ADDRESS],
            severity=cls.severity, category=cls.category, owner_group=cls.owner_group,
            reply_token=token, created_at=received, participants=participants,
            reason=d.reason, actor=actor, tags=tuple(cls.tags), linked_to=d.linked_to,
            rules=tuple(cls.matched), rules_version=cls.version, message_id=msg.message_id))
        self.tickets[key] = TicketFacts(key, str(Status.OPEN), token, None,
                                        frozenset(participants), cls.severity,
                                        cls.owner_group, msg.from_addr, msg.subject,
                                        cls.category)
        if msg.message_id:
            self.message_ids[msg.message_id] = key
        if d.linked_to is not None:
            fx.append(Note(key, EventKind.LINKED, d.reason, actor, received,
                           {"linked_to": d.linked_to}))
        if not msg.from_valid:
            fx.append(Note(key, EventKind.INVALID_SENDER,
                           f"sender address {msg.from_addr!r} is not valid; no mail will be "
                           "sent to it", at=received))
        ack = self._ack(key, token, p, msg, cls)
        fx.append(ack)
        self._escalation_request(key, cls, msg, received, fx)
        group = self.policy.groups.get(cls.owner_group)
        # Mail that was in the folder before mailflow first read it (imap.backlog:
        # import) gets no referral mail either: a backlog of old requests must not
        # flood a group; the owner the rules gave is kept.
        if referable(group) and p.fetched.uid > self.source.backlog_until_uid:
            assert group is not None
            r = at_intake(self.tickets[key], group, cls.matched, msg, received,
                          self.new_token(), self.tier,
                          tell_customer=isinstance(ack, QueueMail) and msg.from_valid)
            fx += r.effects
            self.tickets[key] = r.ticket
        return key

    def _join(self, p: Prepared, msg: Incoming, d: LinkDecision, received: datetime,
              fx: list[Effect]) -> None:
        tid = d.ticket_id
        assert tid is not None
        t = self.tickets[tid]
        actor = msg.from_addr or "(unknown sender)"
        author = author_of(msg, t, d, self.policy.groups)
        if author is not None and (author.role != "customer" or d.token == "referral"):
            self._staff_reply(p, msg, d, t, author, received, fx)
            return
        rating = (parse_rating(msg.new_text) if d.action == Action.REOPEN
                  and t.status == Status.RESOLVED else None)
        if rating is not None:
            # A rating answers the resolution mail: recorded, and the ticket stays resolved.
            fx.append(RecordRating(tid, rating.value, rating.comment, actor, received))
            self._store(tid, p, msg, "ticket", Writer.CUSTOMER, fx)
            if msg.message_id:
                self.message_ids.setdefault(msg.message_id, tid)
            return
        if d.action == Action.REOPEN:
            fx.append(Reopen(tid, received, d.reason, actor))
            t = replace(t, status=str(Status.OPEN), closed_at=None)
            self.tickets[tid] = t
        elif t.status == Status.WAITING:
            # The customer answered: the wait on them (and the SLA pause) ends.
            back = Status.REFERRED if t.referral else Status.OPEN
            fx.append(SetStatus(tid, back, "the customer wrote", actor, previous=t.status))
            t = replace(t, status=str(back))
            self.tickets[tid] = t
        writer = writer_of(msg.from_addr, t, self.policy)
        fx.append(Note(tid, EventKind.CUSTOMER_MESSAGE, d.reason, actor, received,
                       {"message_id": msg.message_id}))
        self._store(tid, p, msg, "ticket", writer, fx)
        # A reply to this reply, later in the same batch, threads here too.
        if msg.message_id:
            self.message_ids.setdefault(msg.message_id, tid)
        if not p.suppress:
            fx += relay(t, msg, self.tier)
        # Re-classify: severity may rise with new information, never drop silently.
        cls = _classification(p)
        if cls.severity < t.severity:
            fx.append(SetSeverity(
                tid, cls.severity, t.severity,
                f"severity {t.severity} -> {cls.severity} by rules "
                f"{', '.join(cls.matched) or '(defaults)'}",
                rules=tuple(cls.matched), rules_version=cls.version))
            self.tickets[tid] = replace(t, severity=cls.severity)
        self._escalation_request(tid, cls, msg, received, fx)

    def _escalation_request(self, tid: int, cls: Classification, msg: Incoming,
                            received: datetime, fx: list[Effect]) -> None:
        """A rule tagged the customer's words as asking for escalation. Recorded here;
        the scheduler, which knows the clocks, decides: a breached level escalates, else
        the front-line lead hears of it and the customer is told the committed times."""
        if ESCALATION_REQUEST_TAG not in cls.tags:
            return
        fx.append(Note(tid, EventKind.ESCALATION_REQUESTED,
                       f"{msg.from_addr or 'the customer'} asks for escalation (rules "
                       f"{', '.join(cls.matched)})", msg.from_addr or SYSTEM, received,
                       {"rules": list(cls.matched), "message_id": msg.message_id}))

    def _staff_reply(self, p: Prepared, msg: Incoming, d: LinkDecision, t: TicketFacts,
                     author: Author, received: datetime, fx: list[Effect]) -> None:
        """A tier group's or staff's reply (or a mail that claims to be one)."""
        self._store(t.id, p, msg, "ticket", writer_for(author), fx)
        if msg.message_id:
            self.message_ids.setdefault(msg.message_id, t.id)
        more, self.tickets[t.id] = staff_reply(t, author, msg, d, received, p.suppress,
                                               self.tier, self.new_token)
        fx += more

    def _ack(self, tid: int, token: str, p: Prepared, msg: Incoming,
             cls: Classification) -> Effect:
        reason = p.suppress
        addr = msg.from_addr
        limit = self.policy.ack_limit
        if reason is None and p.fetched.uid <= self.source.backlog_until_uid:
            reason = ("backlog: the message was in the folder before mailflow first read "
                      "it (imap.backlog: import)")
        if reason is None and addr in self.suppressed:
            reason = f"{addr} is suppressed after a permanent delivery failure"
        if reason is None and self.ack_counts[addr] >= limit:
            reason = (f"already {self.ack_counts[addr]} acknowledgments to {addr} in the last "
                      f"hour (limit {limit}): autoresponder loop protection")
        if reason is not None:
            return SkipAck(tid, reason)
        self.ack_counts[addr] += 1
        level = self.policy.severities[cls.severity]
        references = ((*msg.references[-9:], msg.message_id) if msg.message_id
                      else tuple(msg.references[-10:]))
        return QueueMail(MailRequest(
            kind=OutboxKind.ACKNOWLEDGMENT, template="acknowledgment", recipient=addr,
            ticket=tid, token=token, in_reply_to=msg.message_id, references=references,
            dedupe_key="ack:{ticket}",
            context={
                "ticket": {
                    "subject": msg.subject,
                    "severity": cls.severity,
                    "severity_label": level.label,
                    "first_response": self.policy.promise(cls, addr),
                    "category": cls.category,
                    "owner_group": cls.owner_group,
                    "status": str(Status.OPEN),
                },
                "customer": {"name": msg.from_name, "address": addr},
                # Without Re:/Fwd: piles and other tickets' tags: the shipped template
                # adds "Re:" and our tag (issue 11: no "Re: Re: x [SUP-1] [SUP-2]").
                "message": {"text": msg.new_text,
                            "subject": plain_subject(msg.subject, self.policy.link.prefix)},
                "support_address": self.policy.support_address,
            }), summary=f"to {addr}")

    def _bounce(self, p: Prepared, msg: Incoming, d: LinkDecision, fx: list[Effect]) -> None:
        self._store(d.ticket_id, p, msg, "bounce", Writer.UNKNOWN, fx)
        report = msg.report
        status = report.status if report else ""
        rcpts = list(report.recipients) if report else []
        diagnostic = report.diagnostic if report else ""
        if status.startswith("5"):
            for r in rcpts:
                why = f"bounce {status}: {diagnostic}"
                self.suppressed[r] = why
                fx.append(SuppressAddress(r, why))
        if d.ticket_id is not None:
            fx.append(Note(
                d.ticket_id, EventKind.DELIVERY_FAILED,
                f"delivery of our mail to {', '.join(rcpts) or 'a recipient'} failed "
                f"({status or 'no status'}): {diagnostic}".strip(),
                data={"recipients": rcpts, "status": status, "message_id": msg.message_id}))

    def _store(self, tid: int | None, p: Prepared, msg: Incoming, disposition: str,
               writer: Writer, fx: list[Effect]) -> None:
        limit = self.policy.max_attachment_size
        fx.append(AddMessage(tid, p.fetched, msg, disposition, writer,
                             mailbox=self.source.mailbox, uidvalidity=self.source.uidvalidity,
                             automatic=p.suppress is not None, max_attachment_size=limit))
        if tid is None:
            return
        for a in msg.attachments:
            if a.size > limit:
                fx.append(Note(
                    tid, EventKind.ATTACHMENT_TOO_LARGE,
                    f"attachment {a.filename or a.content_type} ({a.size} bytes) is larger "
                    f"than the limit of {limit} bytes; it is kept only inside the raw "
                    "message"))


def _classification(p: Prepared) -> Classification:
    assert p.classification is not None, "prepare_one classifies every parsed message"
    return p.classification
