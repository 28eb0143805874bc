"""What a due escalation step does to a ticket, as effects: pure.

:func:`mailflow.escalation_chain.due_steps` says which steps are due; this module says
what each of their actions means for this ticket (a reminder to the owner group, the
referral to its fallback, mail to a leader or management, a higher severity, a status
update to the customer) and always records the step as an ``escalated`` event with its
reason, whether it was late, and the ticket's age (early escalations are a signal for
the digest). The scheduler applies the effects with the step's row in one transaction,
so a step fires once per ticket and clock episode, also across restarts and workers.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mailflow.classify.groups import FRONTLINE, Group, GroupsConfig
from mailflow.escalation_chain import DueStep, EscalationConfig
from mailflow.linking import TicketFacts
from mailflow.slaclock import TicketClocks
from mailflow.tickets import EventKind, OutboxKind
from mailflow.tickets.effects import Effect, MailRequest, Note, QueueMail, SetSeverity
from mailflow.tickets.referral import TierPolicy, group_ctx, refer, referable, ticket_ctx
from mailflow.timewords import format_when


@dataclass(frozen=True)
class StepContext:
    ticket: TicketFacts
    created_at: datetime
    clocks: TicketClocks
    groups: GroupsConfig
    config: EscalationConfig
    tier: TierPolicy
    now: datetime

    # Computed once per ticket, not once per step: a tick fires thousands of steps.
    @functools.cached_property
    def owner(self) -> Group:
        return self.groups.get(self.ticket.owner_group) or self.groups.frontline

    @functools.cached_property
    def mail_context(self) -> dict[str, Any]:
        """What every step's mail says about the ticket; each mail adds its own keys
        to a copy (nothing changes these shared values)."""
        return {"subject": self.ticket.subject, "ticket": ticket_ctx(self.ticket, self.tier),
                "owner": group_ctx(self.owner),
                "support_address": self.tier.support_address}

    def when(self, at: datetime | None) -> str | None:
        """``tier.when``, memoised: the same few due times recur in every step."""
        return _when(at, self.tier.tz_name) if at is not None else None


@functools.lru_cache(maxsize=1024)
def _when(at: datetime, tz_name: str) -> str:
    return format_when(at, tz_name)


def step_effects(due: DueStep, c: StepContext, token: str) -> list[Effect]:
    """The effects of one due step. ``token`` is used only by a referral to the fallback
    (a new referral needs its own unguessable token; the caller makes it)."""
    t = c.ticket
    clock = c.clocks.clock(due.key.clock)
    owner = c.owner
    frontline = c.groups.frontline
    leader = owner.leader or frontline.leader
    fx: list[Effect] = []
    # The mails the step queues are named by its event (one row, not one per mail).
    mails: list[dict[str, str]] = []
    # Shared by the step's mails and stored once (MailRequest.shared); each mail's own
    # context holds only what differs (its role; the customer's address).
    context: dict[str, Any] = {
        **c.mail_context,
        "step": {"name": due.step.name, "description": due.step.description,
                 "reason": due.reason, "late": due.late, "chain": due.key.chain},
        "clock": {"kind": due.key.clock.replace("_", " "),
                  "due": c.when(clock.due) if clock and clock.due else None,
                  "target": clock.target.text if clock else None,
                  "policy": clock.policy if clock else None},
    }
    key = f"esc:{{ticket}}:{due.key.chain}:{due.step.name}:{due.key.clock}:{due.key.episode}"

    def notice(recipient: str | None, role: str) -> None:
        # Once per person and step: a leader who is also a management address (or the
        # fallback's) gets one mail, and two would share one dedupe key.
        if not recipient or any(m["to"] == recipient for m in mails):
            return
        fx.append(QueueMail(MailRequest(
            kind=OutboxKind.NOTICE, template="escalation-notice", recipient=recipient,
            ticket=t.id, token=t.reply_token, auto_submitted="auto-generated",
            dedupe_key=f"{key}:{recipient}", context={"role": role}, shared=context),
            summary=f"escalation {due.step.name}: {role} {recipient}", event=False))
        mails.append({"to": recipient, "template": "escalation-notice", "role": role})

    for action in due.step.actions:
        match action.kind:
            case "remind-owner":
                notice(owner.address if owner.name != FRONTLINE else frontline.leader,
                       "reminder to the owner")
            case "notify-leader":
                notice(leader, "leader")
            case "notify-management":
                for addr in c.config.management:
                    notice(addr, "management")
            case "notify":
                notice(action.address, "notified")
            case "raise-severity":
                if t.severity > 1:
                    fx.append(SetSeverity(
                        t.id, t.severity - 1, t.severity,
                        f"severity {t.severity} -> {t.severity - 1} by escalation step "
                        f"{due.step.name}", raise_only=True))
            case "refer-fallback":
                fallback = c.groups.get(owner.fallback) if owner.fallback else None
                if fallback is not None and referable(fallback):
                    fx += refer(t, fallback, f"escalation step {due.step.name}: {due.reason}",
                                f"escalation {due.step.name}", "mailflow", token, c.now,
                                c.tier, tell_customer=False).effects
                elif fallback is not None and fallback.name == FRONTLINE:
                    notice(frontline.leader, "front line (fallback)")
            case "customer-update":
                if t.requester:
                    fx.append(QueueMail(MailRequest(
                        kind=OutboxKind.CUSTOMER_NOTICE, template="status-escalated",
                        recipient=t.requester, ticket=t.id, token=t.reply_token,
                        auto_submitted="auto-generated",
                        dedupe_key=f"{key}:customer",
                        context={"customer": {"name": "", "address": t.requester},
                                 "next_update": _next_update(c)}, shared=context),
                        summary=f"status update: escalated ({due.step.name})", event=False))
                    mails.append({"to": t.requester, "template": "status-escalated",
                                  "role": "customer"})
    fx.insert(0, Note(
        t.id, EventKind.ESCALATED,
        f"escalation step {due.step.name} ({due.key.chain}): {due.reason}",
        data={"step": due.step.name, "chain": due.key.chain, "clock": due.key.clock,
              "episode": due.key.episode, "late": due.late,
              "actions": [str(a) for a in due.step.actions],
              "age_seconds": int((c.now - c.created_at).total_seconds()),
              "moment": due.moment.isoformat(), "reason": due.reason, "mails": mails}))
    return fx


def fold_step_mails(fired: list[tuple[str, list[Effect]]]) -> list[Effect]:
    """The effects of the steps one ticket fires in one tick (in firing order), each
    person mailed once: the mail of the last step wins.

    Steps fire together when their moments passed while nothing ran (downtime; the demo's
    jump of two hours). A reminder that the first response is due in an hour is wrong
    by the time it goes out beside the notice that it was missed; the customer should
    not get two "escalated" updates at the same instant either. Every step still fires
    and keeps its ``escalated`` event; a folded mail stays in that event's list, marked
    ``superseded_by`` the step whose mail went instead. Referrals are never folded. A
    customer's escalation request handled in the same tick takes part like a step
    (``request_effects``): the customer still gets one "escalated" update."""
    if len(fired) < 2:
        return [e for _, fx in fired for e in fx]
    last: dict[str, str] = {}  # recipient -> the last step that mails them
    for name, fx in fired:
        for e in fx:
            if _foldable(e):
                last[e.request.recipient] = name  # type: ignore[union-attr]
    out: list[Effect] = []
    for name, fx in fired:
        for e in fx:
            if _foldable(e) and last[e.request.recipient] != name:  # type: ignore[union-attr]
                continue
            if isinstance(e, Note) and e.kind == EventKind.ESCALATED and "mails" in e.data:
                mails = [m if last.get(m["to"], name) == name else
                         {**m, "superseded_by": last[m["to"]]}
                         for m in e.data.get("mails", ())]
                e = dataclasses.replace(e, data={**e.data, "mails": mails})
            out.append(e)
    return out


def _foldable(e: Effect) -> bool:
    """An escalation step's own notice or customer update (``step_effects``)."""
    return (isinstance(e, QueueMail) and e.request.template in _STEP_TEMPLATES
            and (e.request.dedupe_key or "").startswith("esc:"))


_STEP_TEMPLATES = frozenset({"escalation-notice", "status-escalated"})


def _next_update(c: StepContext) -> str | None:
    """When the customer hears from us next: the next-update clock's due time (or the
    first response's, if nobody answered yet)."""
    for kind in ("next_update", "first_response"):
        clock = c.clocks.clock(kind)
        if clock is not None and clock.stopped is None and clock.due is not None:
            return c.when(clock.due)
    return None


def request_effects(event_id: int, asked_at: datetime, c: StepContext) -> list[Effect]:
    """A customer asked for escalation (event ``escalation-requested``). Not blind: when
    a service level is breached it escalates (leader, management, the customer told);
    while every level is met it is a request the front-line lead decides on, with the
    ticket's clocks, and the customer is told the times we committed to."""
    t = c.ticket
    breached = [k for k in c.clocks.clocks if k.state == "breached"]
    frontline = c.groups.frontline
    owner = c.groups.get(t.owner_group) or frontline
    clocks = [{"kind": k.kind.replace("_", " "), "state": k.state,
               "due": c.tier.when(k.due) if k.due else None, "target": k.target.text,
               "policy": k.policy} for k in c.clocks.clocks]
    base: dict[str, Any] = {"subject": t.subject, "ticket": ticket_ctx(t, c.tier),
                            "clocks": clocks, "owner": group_ctx(owner),
                            "support_address": c.tier.support_address,
                            "asked_at": c.tier.when(asked_at)}
    key = f"esc:{{ticket}}:request:{event_id}"
    fx: list[Effect] = []

    def mail(kind: OutboxKind, template: str, to: str | None, summary: str,
             **extra: Any) -> None:
        if to:
            fx.append(QueueMail(MailRequest(
                kind=kind, template=template, recipient=to, ticket=t.id, token=t.reply_token,
                auto_submitted="auto-generated", dedupe_key=f"{key}:{to}",
                context={**base, **extra}), summary=summary))

    customer = {"name": "", "address": t.requester}
    if breached:
        what = breached[0]
        reason = (f"the customer asked for escalation and the {what.kind.replace('_', ' ')} "
                  f"level is breached (due {c.tier.when(what.due)}, target {what.target.text})")
        fx.append(Note(t.id, EventKind.ESCALATED, reason, data={
            "step": "customer-request", "chain": "request", "clock": what.kind,
            "episode": what.episode, "late": False, "actions": ["notify-leader",
                                                               "notify-management",
                                                               "customer-update"],
            "age_seconds": int((c.now - c.created_at).total_seconds()), "reason": reason,
            "requested": True}))
        step = {"name": "customer-request", "description": "", "reason": reason,
                "late": False, "chain": "request"}
        clock = {"kind": what.kind.replace("_", " "), "due": c.tier.when(what.due),
                 "target": what.target.text, "policy": what.policy}
        for addr in dict.fromkeys([owner.leader or frontline.leader, *c.config.management]):
            mail(OutboxKind.NOTICE, "escalation-notice", addr,
                 f"escalation requested by the customer, level breached: {addr}",
                 step=step, clock=clock,
                 role="management" if addr in c.config.management else "leader")
        mail(OutboxKind.CUSTOMER_NOTICE, "status-escalated", t.requester,
             "status update: escalated at the customer's request", customer=customer,
             step=step, clock=clock, next_update=_next_update(c))
        return fx
    fx.append(Note(t.id, EventKind.NOTE,
                   "escalation request while every service level is met: the front-line "
                   "lead decides; the customer was told the committed times",
                   data={"what": "escalation-request-held", "event": event_id}))
    mail(OutboxKind.NOTICE, "escalation-request", frontline.leader or owner.leader,
         "escalation request to the front-line lead")
    mail(OutboxKind.CUSTOMER_NOTICE, "status-commitments", t.requester,
         "status update: the times we committed to", customer=customer)
    return fx


# The longest a ticket may be snoozed (#snooze): attention drawn to aged tickets comes
# back, snoozing is not a way to make a ticket disappear.
MAX_SNOOZE = timedelta(days=7)


def snooze_effects(t: TicketFacts, until: datetime, reason: str, actor: str,
                   now: datetime) -> list[Effect]:
    """``#snooze 1d reason``: no automatic escalation until then (capped)."""
    capped = min(until, now + MAX_SNOOZE)
    note = "" if capped == until else f" (capped at {MAX_SNOOZE.days} days)"
    return [Note(t.id, EventKind.NOTE, f"snoozed until {capped.isoformat()}{note}: {reason}",
                 actor, now, {"what": "snoozed", "until": capped.isoformat(),
                              "reason": reason})]


def manual_effects(t: TicketFacts, group: Group | None, reason: str, actor: str,
                   now: datetime, groups: GroupsConfig, tier: TierPolicy, token: str,
                   management: tuple[str, ...] = ()) -> list[Effect]:
    """A person escalates (``#escalate [GROUP] reason`` or ``tickets escalate``): the
    event the digest counts, the referral to GROUP when one is named (else the
    front-line lead decides where), and the customer told."""
    frontline = groups.frontline
    fx: list[Effect] = [Note(t.id, EventKind.ESCALATED, f"escalated by {actor}: {reason}",
                             actor, now, {"step": "manual", "chain": "manual", "clock": None,
                                          "episode": 0, "late": False, "by": actor,
                                          "group": group.name if group else None,
                                          "actions": ["refer" if group else "notify-leader"],
                                          "reason": reason})]
    if group is not None and referable(group):
        fx += refer(t, group, f"escalated: {reason}", actor, actor, token, now, tier,
                    tell_customer=False).effects
    owner = group or groups.get(t.owner_group) or frontline
    step = {"name": "escalated by hand", "description": f"{actor}: {reason}",
            "reason": reason, "late": False, "chain": "manual"}
    context: dict[str, Any] = {"subject": t.subject, "ticket": ticket_ctx(t, tier),
                               "step": step, "clock": {"kind": "", "due": None,
                                                       "target": None, "policy": None},
                               "owner": group_ctx(owner),
                               "support_address": tier.support_address}
    for addr, role in ((frontline.leader, "front-line lead"),
                       *((m, "management") for m in management)):
        if addr and addr != actor:
            fx.append(QueueMail(MailRequest(
                kind=OutboxKind.NOTICE, template="escalation-notice", recipient=addr,
                ticket=t.id, token=t.reply_token, auto_submitted="auto-generated",
                context={**context, "role": role}),
                summary=f"escalated by {actor}: {role} {addr}"))
    if t.requester:
        fx.append(QueueMail(MailRequest(
            kind=OutboxKind.CUSTOMER_NOTICE, template="status-escalated",
            recipient=t.requester, ticket=t.id, token=t.reply_token,
            auto_submitted="auto-generated",
            context={**context, "owner": group_ctx(owner), "role": "customer",
                     "customer": {"name": "", "address": t.requester},
                     "next_update": None}),
            summary="status update: escalated"))
    return fx
