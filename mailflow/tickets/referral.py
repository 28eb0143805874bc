"""Referrals to tier groups and what a group's reply does: pure, over ticket facts.

Kept out of :mod:`mailflow.tickets.decide` (which threads and stores every message)
because this is the help desk's escalation practice in code: who has the ticket now,
what the customer is told, and what a tier group's mail commands may change. Every
function here returns effects; :func:`mailflow.tickets.apply.apply` writes them.

The customer hears from us only (the single point of contact): a referral, an
acceptance with its ETA, a public update, a changed ETA and the resolution each become
one STATUS_UPDATE from the support address carrying the ticket's own token, so the
customer's answer threads back as the customer's. The group's mail carries the
*referral's* token, so its answers thread back as the group's, and a token of an
ended referral or a customer's forwarded copy cannot act (mailflow.authorise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from mailflow.authorise import Role, authorise
from mailflow.authorise import Writer as Author
from mailflow.classify.groups import FRONTLINE, Group, GroupsConfig, frontline_only
from mailflow.linking import LinkDecision, ReferralFacts, TicketFacts
from mailflow.parse import Incoming
from mailflow.tickets import SYSTEM, EventKind, OutboxKind, Status, Writer
from mailflow.tickets.effects import (
    Effect,
    EndReferrals,
    MailRequest,
    Note,
    QueueMail,
    Refer,
    SetOwner,
    SetStatus,
)
from mailflow.tickets.wording import human_duration
from mailflow.timewords import format_when


@dataclass(frozen=True)
class TierPolicy:
    """What the tier decisions depend on: the groups (from the rule set in force), the
    help desk's time zone (commands' times, times shown in mail) and severity names."""

    support_address: str
    groups: GroupsConfig = field(default_factory=frontline_only)
    tz: tzinfo = UTC
    severity_labels: Mapping[int, str] = field(default_factory=dict)

    @property
    def tz_name(self) -> str:
        return getattr(self.tz, "key", None) or str(self.tz)

    def when(self, at: datetime | None) -> str | None:
        return format_when(at, self.tz_name) if at is not None else None


def referable(group: Group | None) -> bool:
    """A group that referrals are mailed to: a tier group with an address."""
    return group is not None and group.name != FRONTLINE and bool(group.address)


# -- contexts ------------------------------------------------------------------------

def group_ctx(g: Group) -> dict[str, Any]:
    return {"name": g.name, "description": g.description or g.name, "address": g.address,
            "leader": g.leader}


def ticket_ctx(t: TicketFacts, p: TierPolicy) -> dict[str, Any]:
    return {"subject": t.subject, "severity": t.severity,
            "severity_label": p.severity_labels.get(t.severity, str(t.severity)),
            "category": t.category, "owner_group": t.owner_group, "status": t.status}


def _human(td: timedelta) -> str:
    return human_duration(td)


def customer_mail(t: TicketFacts, p: TierPolicy, template: str, summary: str,
                  kind: OutboxKind = OutboxKind.STATUS_UPDATE, **ctx: Any) -> list[Effect]:
    """One status update to the ticket's customer, with the ticket's own token. A
    person's answer (relayed, accepted, resolved) is a STATUS_UPDATE and counts as a
    response for the SLA clocks; a procedural notice (referred) is a CUSTOMER_NOTICE
    and does not."""
    if not t.requester:
        return []
    return [QueueMail(MailRequest(
        kind=kind, template=template, recipient=t.requester,
        ticket=t.id, token=t.reply_token, auto_submitted="auto-generated",
        context={"subject": t.subject, "ticket": ticket_ctx(t, p),
                 "customer": {"name": "", "address": t.requester},
                 "support_address": p.support_address, **ctx}), summary=summary)]


# -- referral ------------------------------------------------------------------------

@dataclass(frozen=True)
class Referred:
    effects: list[Effect]
    ticket: TicketFacts  # as it is after the referral, for later decisions in the batch


def refer(t: TicketFacts, group: Group, reason: str, by: str, actor: str, token: str,
          now: datetime, p: TierPolicy, *, history: list[dict[str, str]] | None = None,
          attach: tuple[str, ...] = (), customer_name: str = "",
          tell_customer: bool = True) -> Referred:
    """Refer ``t`` to ``group``: a referral row with ``token``, owner and status, the
    referral mail to the group and the status update to the customer.

    ``by`` says who or what referred ("rule database", "tom@..."), ``reason`` why.
    For a ticket not stored yet, ``history``/``attach`` come from the caller; for a
    stored one, apply reads them (None)."""
    assert group.address, "only groups with an address take referrals"
    fx: list[Effect] = [Refer(t.id, group.name, token, reason, actor, now)]
    why = f"referred to {group.name} by {by}: {reason}"
    if t.owner_group != group.name:
        fx.append(SetOwner(t.id, group.name, why, actor, previous=t.owner_group))
    if t.status != Status.REFERRED:
        fx.append(SetStatus(t.id, Status.REFERRED, why, actor, previous=t.status))
    obj = group.objectives_for(t.severity)
    ctx: dict[str, Any] = {
        "subject": t.subject, "ticket": ticket_ctx(t, p), "group": group_ctx(group),
        "customer": {"name": customer_name, "address": t.requester},
        "support_address": p.support_address,
        "referral": {
            "by": by, "reason": reason,
            "objectives": {"accept": _human(obj.accept), "update": _human(obj.update),
                           "resolve": _human(obj.resolve)} if obj else None,
            "accept_due": p.when(now + obj.accept) if obj else None,
            "resolve_due": p.when(now + obj.resolve) if obj else None,
        },
    }
    if history is not None:
        ctx["history"] = history
    fx.append(QueueMail(MailRequest(
        kind=OutboxKind.REFERRAL, template="referral", recipient=group.address, ticket=t.id,
        token=token, auto_submitted="auto-generated", context=ctx, attach=attach),
        summary=f"referral to {group.name} <{group.address}>"))
    after = replace(t, status=str(Status.REFERRED), owner_group=group.name, referrals=(
        *(replace(r, active=False) for r in t.referrals),
        ReferralFacts(None, group.name, token)))
    if tell_customer:
        fx += customer_mail(after, p, "status-referred",
                            f"status update: referred to {group.name}",
                            kind=OutboxKind.CUSTOMER_NOTICE,
                            group=group_ctx(group),
                            next_update=p.when(now + obj.update) if obj else None)
    return Referred(fx, after)


def back_to_frontline(t: TicketFacts, reason: str, actor: str) -> Referred:
    """``#refer frontline``: the help desk has it again (no referral mail); the old
    group's token no longer acts."""
    fx: list[Effect] = []
    if t.referral is not None:
        fx.append(EndReferrals(t.id, f"back to the front line: {reason}", actor))
    if t.owner_group != FRONTLINE:
        fx.append(SetOwner(t.id, FRONTLINE, f"back to the front line: {reason}", actor,
                           previous=t.owner_group))
    if t.status == Status.REFERRED:
        fx.append(SetStatus(t.id, Status.OPEN, f"back to the front line: {reason}", actor,
                            previous=t.status))
    return Referred(fx, replace(t, owner_group=FRONTLINE, status=str(
        Status.OPEN if t.status == Status.REFERRED else t.status),
        referrals=tuple(replace(r, active=False) for r in t.referrals)))


# -- who wrote a reply ---------------------------------------------------------------

def author_of(msg: Incoming, t: TicketFacts, d: LinkDecision,
              groups: GroupsConfig) -> Author | None:
    """Who wrote a reply into ``t`` and whether its commands may act; None for plain
    customer mail (no referral token, not staff): that takes the customer's path
    without the cost of parsing for commands."""
    sender = msg.from_addr
    staff = bool(groups.groups_of(sender))
    if d.token == "referral":
        group, valid = d.group, d.token_current
    elif d.token == "ticket":
        group, valid = FRONTLINE, True
    elif d.token == "case":
        group, valid = d.group, False
    else:
        group, valid = (t.referral.group if t.referral else None), False
    if not staff and d.token not in ("referral", "case"):
        return None
    case_valid = False
    g = groups.get(group)
    ref = t.referral
    if g is not None and ref is not None and ref.group == g.name and ref.external_ref:
        found = g.case_number(f"{msg.subject}\n{msg.new_text}")
        case_valid = bool(found) and str(found).upper() == ref.external_ref.upper()
    return authorise(sender, valid, group, groups, customers=t.participants,
                     case_ref_valid=case_valid)


def writer_for(a: Author) -> Writer:
    return {Role.TIER: Writer.TIER, Role.FRONTLINE: Writer.FRONTLINE,
            Role.CUSTOMER: Writer.CUSTOMER}.get(a.role, Writer.UNKNOWN)


def refused(t: TicketFacts, a: Author, msg: Incoming, received: datetime,
            p: TierPolicy, claims_token: bool = True) -> tuple[list[Effect], TicketFacts]:
    """A mail that may not act: a Note with the reason, and the leader told once when
    it tried to (command lines) or carried a group's token from a wrong sender. A
    colleague's plain words without a token are kept without alarming anyone."""
    lines = [ln.strip() for ln in msg.new_text.split("\n") if ln.strip().startswith("#")]
    what = "commands not allowed" if lines else "kept as a plain message"
    fx: list[Effect] = [Note(t.id, EventKind.NOTE, f"{what}: {a.why}",
                             a.address or "(unknown sender)", received,
                             {"what": "refused", "sender": a.address, "group": a.group})]
    key = f"forged:{t.id}"
    if a.notify and key not in t.sent_keys and (lines or claims_token):
        g = p.groups.get(t.referral.group if t.referral else a.group) or p.groups.frontline
        fx.append(QueueMail(MailRequest(
            kind=OutboxKind.NOTICE, template="forged-command-notice", recipient=a.notify,
            ticket=t.id, dedupe_key="forged:{ticket}", auto_submitted="auto-generated",
            context={"subject": t.subject, "ticket": ticket_ctx(t, p), "group": group_ctx(g),
                     "writer": {"address": a.address, "why": a.why},
                     "received_at": p.when(received), "commands": lines[:20]}),
            summary=f"refused commands: notice to {a.notify}"))
        t = replace(t, sent_keys=t.sent_keys | {key})
    return fx, t


def relay(t: TicketFacts, msg: Incoming, p: TierPolicy) -> list[Effect]:
    """A customer's mail on a referred ticket goes on to the group that has it, with
    the referral's token, so the group's answer threads back as the group's."""
    ref = t.referral
    group = p.groups.get(ref.group) if ref else None
    if ref is None or group is None or not group.address or t.owner_group != ref.group:
        return []
    return [QueueMail(MailRequest(
        kind=OutboxKind.RELAY, template="relay", recipient=group.address, ticket=t.id,
        token=ref.token, auto_submitted="auto-generated",
        context={"subject": t.subject, "ticket": ticket_ctx(t, p), "group": group_ctx(group),
                 "customer": {"name": msg.from_name, "address": msg.from_addr},
                 "message": {"text": msg.new_text, "subject": msg.subject}},
        attach=(msg.dedupe_key,)),
        summary=f"customer's message relayed to {group.name}")]


class ReferralRefused(ValueError):
    """A person's referral that cannot be made (unknown group, closed ticket ...)."""


def refer_by_person(t: TicketFacts, group_name: str, reason: str, by: str, token: str,
                    now: datetime, p: TierPolicy) -> list[Effect]:
    """``mailflow tickets refer ID GROUP --reason ...``: the same effects as a
    ``#refer`` command, checked the way the command parser checks it."""
    name = group_name.strip().lower()
    g = p.groups.get(name)
    if g is None:
        raise ReferralRefused(f"unknown group {group_name!r} (known: "
                              f"{', '.join(sorted(p.groups.names))})")
    if not reason.strip():
        raise ReferralRefused("a referral needs a reason (--reason): it is kept on the "
                              "ticket and told to the group")
    if t.status == Status.CLOSED:
        raise ReferralRefused("the ticket is closed: reopen it first to refer it")
    cur = t.referral
    if cur is not None and cur.group == name and t.owner_group == name:
        raise ReferralRefused(f"the ticket is already with {name}")
    if name == FRONTLINE or not referable(g):
        if t.owner_group == name:
            raise ReferralRefused(f"the ticket is already owned by {name}")
        if name != FRONTLINE:
            return [SetOwner(t.id, name, f"assigned to {name} by {by}: {reason.strip()} "
                             "(the group has no address: no referral mail)", by,
                             previous=t.owner_group)]
        return back_to_frontline(t, reason.strip(), by).effects
    return refer(t, g, reason.strip(), by, by, token, now, p).effects


def at_intake(t: TicketFacts, group: Group, rules: tuple[str, ...], msg: Incoming,
              received: datetime, token: str, p: TierPolicy, tell_customer: bool) -> Referred:
    """The rules gave a new ticket a tier group as owner: refer it at once, with the
    customer's message as the history and the attachment."""
    who = f"{msg.from_name} <{msg.from_addr}>" if msg.from_name else msg.from_addr
    return refer(t, group, f"classified {t.category}, severity {t.severity}",
                 f"rules {', '.join(rules) or '(defaults)'}", SYSTEM, token, received, p,
                 history=[{"when": p.when(received) or "", "who": who,
                           "text": msg.new_text[:4000]}],
                 attach=(msg.dedupe_key,), customer_name=msg.from_name,
                 tell_customer=tell_customer)


def staff_reply(t: TicketFacts, a: Author, msg: Incoming, d: LinkDecision, received: datetime,
                suppress: str | None, p: TierPolicy, new_token: Callable[[], str]
                ) -> tuple[list[Effect], TicketFacts]:
    """What a reply from staff (or one claiming a group's token) does besides being
    stored: its commands act, or it is refused. Automatic mail that may act acts only
    by its commands and gets nothing back (tier_commands.Commands ``automatic``)."""
    if a.may_act:
        from mailflow.tickets.tier_commands import Commands

        return Commands(t, a, msg, d, received, p, new_token, automatic=suppress).run()
    return refused(t, a, msg, received, p, claims_token=d.token in ("referral", "case"))
