"""The database schema, as typed SQLAlchemy 2.0 models.

Shaped for the roadmap: the ticket carries the fields referrals, SLA clocks and the
digest read; every state change is an append-only :class:`TicketEvent` (the audit trail
the digest and escalation reports are computed from); every mail we send is an
:class:`OutboxRow` written in the same transaction as its cause.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

# Stable constraint names so Alembic migrations work the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would otherwise drop the zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is UTC:  # the common case, nine times per ingested message
            return value.replace(tzinfo=None)
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Ticket(Base):
    __tablename__ = "tickets"

    # The ticket number is the primary key: allocation is atomic on every backend and
    # several workers can never hand out the same number.
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    requester: Mapped[str] = mapped_column(String(320), index=True)
    status: Mapped[str] = mapped_column(String(24), index=True)
    severity: Mapped[int] = mapped_column(SmallInteger)
    category: Mapped[str] = mapped_column(String(24))
    owner_group: Mapped[str | None] = mapped_column(String(100), default=None)
    tags: Mapped[list[str]] = mapped_column(default=list)
    # Unguessable part of our reply address and Message-IDs (trust level 1 threading).
    # Unique: it also lets a bulk insert find its new ids without RETURNING.
    reply_token: Mapped[str] = mapped_column(String(32), unique=True)
    linked_ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id"), default=None, index=True
    )
    rules_version: Mapped[str | None] = mapped_column(String(64), default=None)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    last_customer_at: Mapped[datetime | None] = mapped_column(default=None)
    first_response_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the scheduler must look at the ticket next (a clock or escalation step due);
    # set to "now" by every change, so the clocks are recomputed. None: nothing pending.
    next_due_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    # The further mailbox (``mailboxes:``) the ticket came in on, by name; None: the
    # main one. Its mail goes out from that mailbox's address with its prefix.
    desk: Mapped[str | None] = mapped_column(String(64), default=None)

    participants: Mapped[list[Participant]] = relationship(
        back_populates="ticket", cascade="all, delete-orphan"
    )


class Participant(Base):
    """Who may write into a ticket by naming its tag: requester, cc'd people, tiers."""

    __tablename__ = "ticket_participants"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    role: Mapped[str] = mapped_column(String(24))
    ticket: Mapped[Ticket] = relationship(back_populates="participants")

    __table_args__ = (Index("ix_ticket_participants_address", "address"),)


class StoredMessage(Base):
    """Every message we took in or sent, with its raw bytes (nothing is ever dropped)."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    # Why the message is where it is: ticket, own-mail, bounce, auto.
    disposition: Mapped[str] = mapped_column(String(24), default="ticket")
    mailbox: Mapped[str | None] = mapped_column(String(255), default=None)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    uid: Mapped[int | None] = mapped_column(BigInteger, default=None)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    # Message-ID plus a body hash (or a content hash without Message-ID): unique, so the
    # same mail seen twice (a crash before flagging, a UIDVALIDITY reset) is stored once.
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(Text, default=None)
    references: Mapped[list[str]] = mapped_column(default=list)
    from_addr: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(Text, default="")
    to_addrs: Mapped[list[str]] = mapped_column(default=list)
    cc_addrs: Mapped[list[str]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    received_at: Mapped[datetime]
    new_text: Mapped[str] = mapped_column(Text, default="")
    # The whole decoded text; None when it is new_text give or take surrounding blank
    # space (most first messages): storing it twice cost 7 % of ingest (bench). Read it
    # through full_text.
    body_text: Mapped[str | None] = deferred(mapped_column(Text, default=None))
    flags: Mapped[list[str]] = mapped_column(default=list)
    raw: Mapped[bytes] = deferred(mapped_column(LargeBinary))

    attachments: Mapped[list[Attachment]] = relationship(cascade="all, delete-orphan")

    @property
    def full_text(self) -> str:
        return self.new_text if self.body_text is None else self.body_text


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    # False when it exceeded max_attachment_size: the raw message still holds it.
    kept: Mapped[bool] = mapped_column(default=True)


class TicketEvent(Base):
    """Append-only audit trail: who or what changed a ticket, when, and why."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(320))
    summary: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index("ix_ticket_events_ticket_id_id", "ticket_id", "id"),
        Index("ix_ticket_events_kind_at", "kind", "at"),
    )


class OutboxContext(Base):
    """Template context that several outbox rows share, stored once.

    An escalation tick queues thousands of notices whose contexts differ only in a few
    keys (the role, the customer's address): the common part is stored once per step
    (29 % fewer context bytes per tick, bench/RESULTS.md). Written by the one writer in
    the same transaction as the rows that refer to it; never changed afterwards, never
    deleted (a row's mail must render the same at its last retry as at its first).
    """

    __tablename__ = "outbox_contexts"

    # Chosen by the writer (one random prefix per apply, then a counter): no round trip
    # to learn the ids of an executemany, and one apply's keys sit together in the index.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    context: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class OutboxRow(Base):
    """One mail to send, committed with the state change that caused it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    # e.g. "ack:17": a second attempt to queue the same mail fails on this constraint.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    mail_from: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))
    # Fixed when queued: a retry resends the very same Message-ID.
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    template: Mapped[str] = mapped_column(String(100))
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The part of the context this row shares with others (OutboxContext); the row's
    # own ``context`` holds the rest. Read through :meth:`full_context`.
    shared_context: Mapped[str | None] = mapped_column(
        ForeignKey("outbox_contexts.key"), default=None)
    # Loaded with the rows (one more SELECT, only when some row refers to one): the
    # sender renders rows after their session has closed.
    shared: Mapped[OutboxContext | None] = relationship(lazy="selectin")
    # The envelope, fixed when queued (never customer text as a header: In-Reply-To and
    # References are Message-IDs the parser validated).
    reply_token: Mapped[str | None] = mapped_column(String(32), default=None)
    in_reply_to: Mapped[str | None] = mapped_column(Text, default=None)
    references: Mapped[list[str]] = mapped_column(default=list)
    auto_submitted: Mapped[str] = mapped_column(String(40), default="auto-replied")
    # Rendered once, at the first delivery attempt, and kept: retries send these bytes.
    raw: Mapped[bytes | None] = deferred(mapped_column(LargeBinary, default=None))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)

    def full_context(self) -> dict[str, Any]:
        """The context the template gets: the shared part, then the row's own keys (the
        same keys in the same order as when the whole context was stored per row)."""
        own = self.context or {}
        shared = self.shared
        return {**shared.context, **own} if shared is not None else dict(own)

    __table_args__ = (
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_recipient_kind_created_at", "recipient", "kind", "created_at"),
    )


class Suppression(Base):
    """An address that answered 5xx: no more mail to it until an administrator clears it."""

    __tablename__ = "suppressions"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class MailboxCheckpoint(Base):
    __tablename__ = "mailbox_checkpoints"

    mailbox: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]
    # What the first look found in the folder (imap.backlog): mail up to this UID becomes
    # tickets without customer mail ("import"), or is never touched ("skip").
    backlog_until_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped_until_uid: Mapped[int] = mapped_column(BigInteger, default=0)


class QuarantinedMessage(Base):
    """Mail we could not turn into a ticket, kept byte for byte with the reason."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str | None] = mapped_column(String(255))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    created_at: Mapped[datetime]
    released_at: Mapped[datetime | None] = mapped_column(default=None)


class Referral(Base):
    """A ticket sent to a tier group: ownership follows it, its token lets the group act.

    One row per referral, never rewritten into another: a ticket referred on to a
    vendor ends the earlier referral (``ended_at``) and gets a new row with a new
    token, so a reply to an old referral mail still threads but can no longer act.
    """

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    group: Mapped[str] = mapped_column(String(100))
    # In the Reply-To and Message-ID of the referral mail: unguessable, per referral.
    token: Mapped[str] = mapped_column(String(32), unique=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None] = mapped_column(default=None)
    eta: Mapped[datetime | None] = mapped_column(default=None)
    next_update_due: Mapped[datetime | None] = mapped_column(default=None)
    # The group's own case number (groups.yaml external_ref), once a reply names it.
    external_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class TicketClock(Base):
    """A ticket's SLA clocks as the scheduler last computed them (from the event trail):
    what ``tickets list --overdue`` and the digest's compliance figures read."""

    __tablename__ = "ticket_clocks"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    episode: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy: Mapped[str] = mapped_column(String(64))
    severity: Mapped[int] = mapped_column(SmallInteger)
    owner_group: Mapped[str | None] = mapped_column(String(100), default=None)
    started_at: Mapped[datetime]
    due_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    state: Mapped[str] = mapped_column(String(12))  # running | paused | met | breached
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)


class EscalationStep(Base):
    """An escalation step that fired: once per ticket, step and clock episode."""

    __tablename__ = "escalation_steps"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    step: Mapped[str] = mapped_column(String(100), primary_key=True)
    clock: Mapped[str] = mapped_column(String(20), primary_key=True)
    episode: Mapped[int] = mapped_column(Integer, primary_key=True)
    fired_at: Mapped[datetime]
    late: Mapped[bool] = mapped_column(default=False)


class DigestDay(Base):
    """The digest's figures of one closed local day, so that the daily digest compares
    against 30 stored rows instead of scanning a month of a million tickets.

    Derived data, not ticket state (written by :mod:`mailflow.digest.stored`, outside the
    one writer): a row can be dropped or rewritten at any time and the next digest
    computes it again. ``basis`` names what the figures depend on (time zone, FCR
    window, early-escalation limit, the definitions' version); ``events_upto`` is the
    newest event id the row is known to reflect: a later event about the day, or about a
    ticket opened on it, makes the digest compute the day again.
    """

    __tablename__ = "digest_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    basis: Mapped[str] = mapped_column(String(120), primary_key=True)
    counts: Mapped[dict[str, Any]]  # mailflow.digest.metrics.Counts, field by field
    rule_hits: Mapped[dict[str, Any]]  # rule name -> hits on the day's new tickets
    events_upto: Mapped[int] = mapped_column(BigInteger)
    events_seen: Mapped[int] = mapped_column(BigInteger)  # the newest id when last checked
    computed_at: Mapped[datetime]


# The digest's scans of one day: responses by the time they were sent, clocks by the time
# they stopped (kept here with the digest's table, not in the two models above).
Index("ix_outbox_sent_at", OutboxRow.sent_at)
Index("ix_ticket_clocks_stopped_at", TicketClock.stopped_at)
