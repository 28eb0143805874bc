"""Every change to ticket state, as data.

Deciding and writing are apart (Mailman's rules and handlers, imapautofiler's report
and invoke): ingest, the outbox sender, the CLI and the scheduler each *decide* what
should happen and say it with these frozen values; :func:`mailflow.tickets.apply.apply`
is the one place that writes it. So ``rules test --effects`` can print a decision
without writing it, tests can assert a decision without a database, and a referral, a
tier command or an escalation step cannot forget the event or the outbox row that an
acknowledgment gets.

Ticket references: a ticket that exists has its positive id. A ticket opened by an
:class:`OpenTicket` earlier in the same list is named by that effect's negative
``key`` until :func:`apply` has inserted it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailflow.parse import Incoming
from mailflow.prepare import Fetched
from mailflow.tickets import SYSTEM, EventKind, OutboxKind, Status, Writer


@dataclass(frozen=True, slots=True)
class OpenTicket:
    key: int  # negative: how later effects in the same list name this ticket
    subject: str
    requester: str
    severity: int
    category: str
    owner_group: str | None
    reply_token: str
    created_at: datetime
    participants: tuple[str, ...]
    reason: str
    actor: str = SYSTEM
    tags: tuple[str, ...] = ()
    linked_to: int | None = None
    rules: tuple[str, ...] = ()
    rules_version: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class AddMessage:
    """Store an incoming message (raw bytes kept); on a ticket, count it as its writer's."""

    ticket: int | None
    fetched: Fetched
    msg: Incoming
    disposition: str  # ticket | own-mail | bounce
    writer: Writer = Writer.UNKNOWN
    reason: str = ""
    mailbox: str | None = None
    uidvalidity: int | None = None
    automatic: bool = False  # RFC 3834 automatic mail
    max_attachment_size: int | None = None
    direction: str = "in"  # "out": a copy of an answer staff sent themselves


@dataclass(frozen=True, slots=True)
class StaffAnswer:
    """Staff answered the customer outside mailflow (their mail client): a response."""

    ticket: int
    at: datetime
    actor: str
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reopen:
    ticket: int
    at: datetime
    reason: str
    actor: str = SYSTEM


@dataclass(frozen=True, slots=True)
class SetSeverity:
    """Raise (or, with ``raise_only=False``, set) a ticket's severity; 1 is the highest."""

    ticket: int
    severity: int
    previous: int
    reason: str
    actor: str = SYSTEM
    raise_only: bool = True
    rules: tuple[str, ...] = ()
    rules_version: str | None = None


@dataclass(frozen=True, slots=True)
class SetStatus:
    ticket: int
    status: Status
    reason: str
    actor: str = SYSTEM
    previous: str | None = None


@dataclass(frozen=True, slots=True)
class SetOwner:
    ticket: int
    group: str | None
    reason: str
    actor: str = SYSTEM
    previous: str | None = None


@dataclass(frozen=True, slots=True)
class MailRequest:
    """A mail to queue. The template is rendered at delivery from ``context``; customer
    text travels in the context as data, never as template source or a header."""

    kind: OutboxKind
    template: str
    recipient: str
    ticket: int | None
    context: Mapping[str, Any] = field(default_factory=dict)
    # The ticket's reply token: our Reply-To and Message-ID carry it (trust level 1).
    token: str | None = None
    auto_submitted: str = "auto-replied"
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    # At most one such row ever: "{ticket}" is replaced by the ticket's id.
    dedupe_key: str | None = None
    mail_from: str | None = None  # default: the support address
    # Stored messages (by dedupe key) to attach as message/rfc822 (a referral carries
    # the customer's originals). For a referral to a stored ticket, apply adds the
    # ticket's customer messages and its history itself.
    attach: tuple[str, ...] = ()
    # Keys this mail shares with other mails of the same apply (an escalation step's
    # notices): the very same mapping object in each. The template gets
    # ``{**shared, **context}``; the writer stores the shared part once
    # (``outbox_contexts``) instead of in every row.
    shared: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class QueueMail:
    request: MailRequest
    summary: str = ""
    # False: another event of the same change names this mail already (an escalation
    # step's ``escalated`` event lists its mails), so no ``mail-queued`` event of its own.
    event: bool = True


@dataclass(frozen=True, slots=True)
class SkipAck:
    ticket: int
    reason: str


@dataclass(frozen=True, slots=True)
class SuppressAddress:
    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Keep a message byte for byte, with the reason it could not become ticket mail."""

    fetched: Fetched
    key: str
    reason: str
    mailbox: str | None = None
    uidvalidity: int | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """An event on a ticket that changes nothing else (own mail back, a large attachment,
    a bounce, a note by staff)."""

    ticket: int
    kind: EventKind
    summary: str
    actor: str = SYSTEM
    at: datetime | None = None  # default: the apply time
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refer:
    """A referral to a tier group: a row with its own token; earlier referrals of the
    ticket end (their tokens still thread, but can no longer act). Owner and status
    change by their own effects, so each leaves its event."""

    ticket: int
    group: str
    token: str
    reason: str
    actor: str = SYSTEM
    at: datetime | None = None  # default: the apply time


@dataclass(frozen=True, slots=True)
class EndReferrals:
    """The ticket is back with the front line: its referrals end (their tokens still
    thread mail into it, but can no longer act)."""

    ticket: int
    reason: str
    actor: str = SYSTEM


@dataclass(frozen=True, slots=True)
class AcceptReferral:
    ticket: int
    token: str  # which referral (unique)
    group: str
    actor: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SetEta:
    """A group's expected resolution and/or its next update at the latest."""

    ticket: int
    token: str
    group: str
    actor: str
    eta: datetime | None = None
    next_update: datetime | None = None
    previous_eta: datetime | None = None


@dataclass(frozen=True, slots=True)
class RecordCaseRef:
    """The group's own case number, first seen in its reply (groups.yaml external_ref)."""

    ticket: int
    token: str
    group: str
    case_ref: str


@dataclass(frozen=True, slots=True)
class RecordRating:
    """A customer's 1-5 satisfaction rating; the ticket stays resolved."""

    ticket: int
    value: int
    comment: str
    actor: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MailSent:
    """The server took an outbox row (250): it is sent; a response starts no clock again."""

    outbox_id: int
    ticket: int | None
    kind: str
    recipient: str
    message_id: str
    answer: str


@dataclass(frozen=True, slots=True)
class MailFailed:
    """An outbox row will not be sent: permanently refused, given up, or not allowed."""

    outbox_id: int
    ticket: int | None
    kind: str
    recipient: str
    reason: str
    suppress: bool = False  # a permanent refusal of customer mail: stop mailing the address


@dataclass(frozen=True, slots=True)
class MailRetry:
    outbox_id: int
    reason: str
    next_attempt_at: datetime
    ticket: int | None = None
    fresh: bool = False  # an administrator's retry: attempts start again from zero


@dataclass(frozen=True, slots=True)
class MailDropped:
    """An administrator decided a mail must never be sent."""

    outbox_id: int
    ticket: int | None
    reason: str
    actor: str = SYSTEM


@dataclass(frozen=True, slots=True)
class Schedule:
    """When the scheduler must look at the ticket next (None: nothing pending)."""

    ticket: int
    due: datetime | None


@dataclass(frozen=True, slots=True)
class LiftSuppression:
    """Mail may go to the address again (an administrator's retry after a fix)."""

    address: str
    actor: str = SYSTEM


Effect = (OpenTicket | AddMessage | Reopen | SetSeverity | SetStatus | SetOwner | QueueMail
          | SkipAck | SuppressAddress | Quarantine | Note | MailSent | MailFailed | MailRetry
          | Refer | AcceptReferral | SetEta | RecordCaseRef | RecordRating | MailDropped
          | LiftSuppression | Schedule | StaffAnswer | EndReferrals)


def describe(e: Effect) -> str:
    """One line per effect, for ``rules test --effects`` and logs."""
    match e:
        case OpenTicket():
            return (f"open ticket ({e.key}) for {e.requester or '(unknown sender)'}: severity "
                    f"{e.severity}, {e.category}, owner {e.owner_group}; {e.reason}")
        case AddMessage():
            where = f"ticket {e.ticket}" if e.ticket is not None else "no ticket"
            return f"add message <{e.msg.message_id}> to {where} as {e.disposition} " \
                   f"(writer: {e.writer})"
        case Reopen():
            return f"reopen ticket {e.ticket}: {e.reason}"
        case SetSeverity():
            return f"severity of ticket {e.ticket}: {e.previous} -> {e.severity}: {e.reason}"
        case SetStatus():
            return f"status of ticket {e.ticket} -> {e.status}: {e.reason}"
        case SetOwner():
            return f"owner of ticket {e.ticket} -> {e.group}: {e.reason}"
        case QueueMail():
            r = e.request
            return f"queue {r.kind} ({r.template}) to {r.recipient} for ticket {r.ticket}"
        case SkipAck():
            return f"no acknowledgment for ticket {e.ticket}: {e.reason}"
        case SuppressAddress():
            return f"suppress {e.address}: {e.reason}"
        case Quarantine():
            return f"quarantine uid {e.fetched.uid}: {e.reason}"
        case Note():
            return f"event {e.kind} on ticket {e.ticket}: {e.summary}"
        case Refer():
            return f"refer ticket {e.ticket} to {e.group}: {e.reason}"
        case AcceptReferral():
            return f"{e.group} accepts ticket {e.ticket}"
        case SetEta():
            return f"ticket {e.ticket}: eta {e.eta}, next update {e.next_update} ({e.group})"
        case RecordCaseRef():
            return f"ticket {e.ticket}: {e.group}'s case number {e.case_ref}"
        case RecordRating():
            return f"ticket {e.ticket} rated {e.value}"
        case MailSent():
            return f"outbox {e.outbox_id} sent to {e.recipient}"
        case MailFailed():
            return f"outbox {e.outbox_id} to {e.recipient} failed: {e.reason}"
        case MailRetry():
            return f"outbox {e.outbox_id} retried at {e.next_attempt_at}: {e.reason}"
        case MailDropped():
            return f"outbox {e.outbox_id} dropped: {e.reason}"
        case LiftSuppression():
            return f"mail to {e.address} allowed again"
        case Schedule():
            return f"ticket {e.ticket}: next look at {e.due}"
        case EndReferrals():
            return f"ticket {e.ticket}: referrals end ({e.reason})"
        case StaffAnswer():
            return f"ticket {e.ticket}: answered by {e.actor} from their mail client"
    raise TypeError(f"not an effect: {e!r}")  # pragma: no cover
