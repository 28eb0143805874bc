"""Which ticket a message belongs to, and why: pure, over facts the store gathered.

Trust order (issue 3): our own reply token, then In-Reply-To/References naming a
Message-ID we stored or sent, then a ``[SUP-123]`` subject tag from a participant of
that ticket, else a new ticket. There is no fuzzy subject matching across senders: a
stranger must not be able to write into someone else's ticket by guessing a number.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from mailflow.autoresponse import is_own
from mailflow.parse import Incoming

_TOKEN_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_OUR_ID = re.compile(r"^mf\.(\d+)\.([a-z2-9]{12})\.[A-Za-z0-9]+@")


def new_token() -> str:
    """12 characters from 32: 60 bits, not guessable by trying."""
    # One read of 60 random bits, cut into 5-bit letters: an exact uniform choice per
    # letter (32 is a power of two), at a twelfth of the cost of 12 secrets.choice calls.
    n = secrets.randbits(60)
    return "".join(_TOKEN_ALPHABET[(n >> shift) & 31] for shift in range(0, 60, 5))


def message_id_for(ticket_id: int | None, token: str | None, domain: str) -> str:
    """Our Message-IDs carry the ticket and its token, so a reply threads back even
    when the client drops our Reply-To (trust level 1)."""
    nonce = secrets.token_hex(8)
    if ticket_id is None or token is None:
        return f"mf.0.{nonce}@{domain}"
    return f"mf.{ticket_id}.{token}.{nonce}@{domain}"


def reply_address(support_address: str, ticket_id: int, token: str) -> str:
    local, _, domain = support_address.partition("@")
    return f"{local}+{ticket_id}.{token}@{domain}"


def token_in_address(addr: str, support_address: str) -> tuple[int, str] | None:
    local, _, domain = addr.lower().partition("@")
    s_local, _, s_domain = support_address.partition("@")
    base, plus, tag = local.partition("+")
    if not plus or base != s_local or domain != s_domain:
        return None
    num, dot, token = tag.partition(".")
    if not dot or not num.isdigit() or len(token) != 12:
        return None
    return int(num), token


def token_in_message_id(mid: str) -> tuple[int, str] | None:
    m = _OUR_ID.match(mid)
    return (int(m.group(1)), m.group(2)) if m and m.group(1) != "0" else None


def subject_tags(subject: str, prefix: str) -> list[int]:
    return [int(n) for n in re.findall(rf"\[{re.escape(prefix)}-(\d{{1,12}})\]", subject)]


class Action(StrEnum):
    JOIN = "join"  # add to an open ticket
    REOPEN = "reopen"  # add to a resolved/closed ticket and reopen it
    NEW = "new"  # open a new ticket
    NEW_LINKED = "new-linked"  # open a new ticket linked to an older one
    OWN_MAIL = "own-mail"  # our own mail came back: never a ticket
    BOUNCE = "bounce"  # a delivery report for mail we sent
    UNMATCHED_BOUNCE = "unmatched-bounce"


@dataclass(frozen=True)
class ReferralFacts:
    """One referral of a ticket to a tier group (``mailflow.store.models.Referral``)."""

    id: int | None  # None: made earlier in the same batch, not stored yet
    group: str
    token: str
    active: bool = True  # not ended by a later referral: its token may act
    accepted_at: datetime | None = None
    eta: datetime | None = None
    next_update_due: datetime | None = None
    external_ref: str | None = None


@dataclass(frozen=True)
class TicketFacts:
    id: int
    status: str
    reply_token: str
    closed_at: datetime | None
    participants: frozenset[str]
    severity: int = 3
    owner_group: str | None = None
    # For mail about the ticket (status updates, referrals): who asked, and what about.
    requester: str = ""
    subject: str = ""
    category: str = ""
    referrals: tuple[ReferralFacts, ...] = ()
    # Outbox dedupe keys already used on the ticket ("once per ticket" notices).
    sent_keys: frozenset[str] = frozenset()

    @property
    def referral(self) -> ReferralFacts | None:
        """The referral the ticket is with now, if any."""
        return next((r for r in reversed(self.referrals) if r.active), None)

    def referral_by_token(self, token: str) -> ReferralFacts | None:
        for r in self.referrals:
            if secrets.compare_digest(r.token, token):
                return r
        return None


@dataclass(frozen=True)
class LinkFacts:
    """What the store knows that linking needs, gathered per batch in few queries."""

    tickets: Mapping[int, TicketFacts] = field(default_factory=dict)
    # Message-ID (without <>) -> ticket, for every message stored or sent.
    message_ids: Mapping[str, int] = field(default_factory=dict)
    # Message-IDs that we sent (outbox): a copy of one coming back is our own mail.
    sent_ids: frozenset[str] = frozenset()
    # Mail from a tier group's own domain naming the group's case number recorded on a
    # referral (groups.yaml external_ref): dedupe key -> (ticket, group, case number).
    case_refs: Mapping[str, tuple[int, str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class LinkPolicy:
    support_address: str
    own_addresses: frozenset[str]
    prefix: str
    reopen_window: timedelta


@dataclass(frozen=True)
class LinkDecision:
    action: Action
    ticket_id: int | None
    reason: str
    linked_to: int | None = None
    # The mail carries a token of ours: "ticket" (the ticket's own) or "referral"; or
    # "case": a tier group's case number recorded on the ticket (no token of ours).
    token: str | None = None
    # With a referral token: the group it was made for, and whether it is still current.
    group: str | None = None
    token_current: bool = False


def candidate_ticket_ids(msg: Incoming, policy: LinkPolicy) -> set[int]:
    """Ticket numbers this message might name, for the store to look up in one go."""
    ids: set[int] = set(subject_tags(msg.subject, policy.prefix))
    for addr in msg.recipients:
        tok = token_in_address(addr, policy.support_address)
        if tok:
            ids.add(tok[0])
    for mid in _referenced(msg):
        tok = token_in_message_id(mid)
        if tok:
            ids.add(tok[0])
    if msg.report and msg.report.original_message_id:
        tok = token_in_message_id(msg.report.original_message_id)
        if tok:
            ids.add(tok[0])
    return ids


def _referenced(msg: Incoming) -> list[str]:
    # In-Reply-To first: it names the message actually answered.
    out = [msg.in_reply_to] if msg.in_reply_to else []
    out.extend(reversed(msg.references))
    return out


def _valid_token(facts: LinkFacts, found: tuple[int, str] | None) -> int | None:
    if not found:
        return None
    t = facts.tickets.get(found[0])
    return t.id if t and secrets.compare_digest(t.reply_token, found[1]) else None


@dataclass(frozen=True)
class _Token:
    ticket: TicketFacts
    kind: str  # "ticket" | "referral"
    referral: ReferralFacts | None = None


def _token(facts: LinkFacts, found: tuple[int, str] | None) -> _Token | None:
    """The ticket's own token, or one of its referrals' (old ones too: they thread)."""
    if not found:
        return None
    t = facts.tickets.get(found[0])
    if t is None:
        return None
    if secrets.compare_digest(t.reply_token, found[1]):
        return _Token(t, "ticket")
    r = t.referral_by_token(found[1])
    return _Token(t, "referral", r) if r is not None else None


def _continue(ticket: TicketFacts, how: str, now: datetime, policy: LinkPolicy,
              tok: _Token | None = None) -> LinkDecision:
    r = tok.referral if tok is not None else None
    if r is not None:
        how = f"{how} (referral to {r.group}{'' if r.active else ', ended'})"
    if ticket.status == "closed":
        if ticket.closed_at and now - ticket.closed_at > policy.reopen_window:
            return LinkDecision(
                Action.NEW_LINKED,
                None,
                f"{how}, but it was closed more than the reopen window ago",
                linked_to=ticket.id,
            )
        d = LinkDecision(Action.REOPEN, ticket.id, f"{how}; the ticket was closed")
    elif ticket.status == "resolved":
        d = LinkDecision(Action.REOPEN, ticket.id, f"{how}; the ticket was resolved")
    else:
        d = LinkDecision(Action.JOIN, ticket.id, how)
    if tok is None:
        return d
    return replace(d, token=tok.kind, group=r.group if r else None,
                   token_current=r.active if r else True)


def decide(msg: Incoming, facts: LinkFacts, policy: LinkPolicy, now: datetime) -> LinkDecision:
    # Our own mail coming back (a copy, a loop through an alias) is never a ticket.
    if (msg.message_id and msg.message_id in facts.sent_ids) or (
        msg.from_addr and is_own(msg.from_addr, policy.own_addresses)
    ):
        return LinkDecision(Action.OWN_MAIL, facts.message_ids.get(msg.message_id or ""),
                            "sent by mailflow (own address or own Message-ID)")

    if msg.report is not None:
        return _bounce(msg, facts)

    # 1. Our reply token, in the address the customer replied to or our Message-IDs.
    for addr in msg.recipients:
        tok = _token(facts, token_in_address(addr, policy.support_address))
        if tok is not None:
            return _continue(tok.ticket, f"reply token in address {addr}", now, policy, tok)
    for mid in _referenced(msg):
        tok = _token(facts, token_in_message_id(mid))
        if tok is not None:
            return _continue(tok.ticket, "reply token in a referenced Message-ID", now,
                             policy, tok)

    # 1b. A tier group's case number, from the group's domain, recorded on a referral:
    # a vendor's ticket system that drops our headers (authorise decides what it may do).
    case = facts.case_refs.get(msg.dedupe_key)
    if case is not None and case[0] in facts.tickets:
        t = facts.tickets[case[0]]
        r = next((r for r in reversed(t.referrals) if r.group == case[1]), None)
        d = _continue(t, f"{case[1]}'s case number {case[2]}", now, policy)
        if d.ticket_id is not None:
            return replace(d, token="case", group=case[1],
                           token_current=bool(r and r.active))

    # 2. In-Reply-To / References naming a message we stored or sent.
    for mid in _referenced(msg):
        tid = facts.message_ids.get(mid)
        if tid is not None and tid in facts.tickets:
            return _continue(facts.tickets[tid], f"references <{mid}>", now, policy)

    # 3. A subject tag, only from a participant of that ticket.
    tags = subject_tags(msg.subject, policy.prefix)
    for n in tags:
        tagged = facts.tickets.get(n)
        if tagged and msg.from_addr in tagged.participants:
            return _continue(tagged, f"subject tag [{policy.prefix}-{n}] from a participant", now,
                             policy)
    for n in tags:
        if n in facts.tickets:
            return LinkDecision(
                Action.NEW_LINKED,
                None,
                f"subject names [{policy.prefix}-{n}] but {msg.from_addr or 'the sender'} "
                "is not a participant of it",
                linked_to=n,
            )

    # 4. Otherwise: a new ticket.
    return LinkDecision(Action.NEW, None, "no reply token, known reference or subject tag")


def _bounce(msg: Incoming, facts: LinkFacts) -> LinkDecision:
    assert msg.report is not None
    candidates = [msg.report.original_message_id] if msg.report.original_message_id else []
    candidates += _referenced(msg)
    for mid in candidates:
        if mid in facts.sent_ids or mid in facts.message_ids:
            return LinkDecision(Action.BOUNCE, facts.message_ids.get(mid),
                                f"delivery report for <{mid}>")
        tid = _valid_token(facts, token_in_message_id(mid))
        if tid is not None:
            return LinkDecision(Action.BOUNCE, tid, f"delivery report for <{mid}>")
    return LinkDecision(Action.UNMATCHED_BOUNCE, None,
                        "delivery report that names no mail we sent")
