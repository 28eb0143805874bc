"""A reply from someone who may act (a tier group's member, front-line staff): pure.

The commands at the top (mailflow.commands) become effects, all or nothing; the text
below them goes to the customer unless ``#internal``; every mail with commands gets a
transcript back. One mail with ``#accept``, ``#eta 4h`` and a few words gives the
customer *one* status update (accepted, with the ETA and the words), not three.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from mailflow import commands as cmd
from mailflow.authorise import Writer as Author
from mailflow.classify.groups import FRONTLINE, Group
from mailflow.escalation import manual_effects, snooze_effects
from mailflow.linking import LinkDecision, ReferralFacts, TicketFacts
from mailflow.parse import Incoming
from mailflow.tickets import EventKind, OutboxKind, Status
from mailflow.tickets.effects import (
    AcceptReferral,
    Effect,
    MailRequest,
    Note,
    QueueMail,
    RecordCaseRef,
    SetEta,
    SetSeverity,
    SetStatus,
)
from mailflow.tickets.referral import (
    TierPolicy,
    back_to_frontline,
    customer_mail,
    group_ctx,
    refer,
    referable,
    ticket_ctx,
)


class Commands:
    def __init__(self, t: TicketFacts, a: Author, msg: Incoming, d: LinkDecision,
                 received: datetime, p: TierPolicy, new_token: Callable[[], str],
                 automatic: str | None = None):
        self.t = t
        # RFC 3834 automatic mail (a vendor's ticket system, an out-of-office): its
        # commands may act, but nothing is mailed back to it, and without commands it
        # is only kept (an out-of-office text is no update for the customer).
        self.automatic = automatic
        self.a = a
        self.msg = msg
        self.d = d
        self.received = received
        self.p = p
        self.new_token = new_token
        self.actor = a.address
        self.fx: list[Effect] = []
        self.group: Group | None = p.groups.get(a.group)
        # The referral this writer acts on: its group's current one.
        ref = t.referral
        self.ref: ReferralFacts | None = ref if ref and ref.group == a.group else None

    def run(self) -> tuple[list[Effect], TicketFacts]:
        t, p = self.t, self.p
        parsed = self._applicable(
            cmd.parse_reply(self.msg.new_text, self.received, p.tz, p.groups.names))
        if self.automatic and not parsed.has_commands:
            self.fx.append(Note(t.id, EventKind.NOTE, f"automatic mail from {self.actor} "
                                f"({self.automatic}) without commands: kept, not relayed",
                                self.actor, self.received, {"what": "automatic"}))
            return self.fx, self.t
        self._case_ref()
        if parsed.has_commands and not self.automatic:
            self._transcript(parsed)
        if parsed.rejected:
            self.fx.append(Note(t.id, EventKind.NOTE, "mail commands rejected; nothing "
                                "applied (transcript sent)", self.actor, self.received,
                                {"what": "commands-rejected",
                                 "errors": [e.written for e in parsed.errors]}))
            return self.fx, self.t
        accepted = eta_changed = resolved = referred = False
        previous_eta = self.ref.eta if self.ref else None
        eta = nxt = None
        for c in parsed.to_apply:
            match c:
                case cmd.Accept():
                    accepted = self._accept()
                case cmd.Eta(due=due):
                    eta = due
                case cmd.NextUpdate(due=due):
                    nxt = due
                case cmd.SetStatus(status=s):
                    resolved = self._status(s, c.written) or resolved
                case cmd.Refer(group=g, reason=r):
                    referred = self._refer(g, r)
                case cmd.SetSeverity(severity=s, reason=r):
                    self.fx.append(SetSeverity(t.id, s, self.t.severity,
                                               f"severity {self.t.severity} -> {s} by "
                                               f"{self.actor}: {r}", self.actor,
                                               raise_only=False))
                    self.t = replace(self.t, severity=s)
                case cmd.Cause(text=x) | cmd.Prevention(text=x):
                    what = "cause" if isinstance(c, cmd.Cause) else "prevention"
                    self.fx.append(Note(t.id, EventKind.NOTE, f"{what}: {x}", self.actor,
                                        self.received, {"what": what, "text": x}))
                case cmd.Escalate(group=g, reason=r):
                    target = p.groups.get(g) if g else None
                    self.fx += manual_effects(self.t, target, r, self.actor, self.received,
                                              p.groups, p, self.new_token())
                    if target is not None and referable(target):
                        referred = True
                        self.t = replace(self.t, owner_group=target.name,
                                         status=str(Status.REFERRED))
                        self.ref = None
                case cmd.Snooze(until=until, reason=r):
                    self.fx += snooze_effects(self.t, until, r, self.actor, self.received)
                case cmd.Internal():
                    pass
        if (eta or nxt) and self.ref is not None:
            self.fx.append(SetEta(t.id, self.ref.token, self.ref.group, self.actor, eta, nxt,
                                  previous_eta))
            eta_changed = eta is not None
            self._ref(eta=eta or self.ref.eta, next_update_due=nxt or self.ref.next_update_due)
        if accepted and self.ref is not None and not (self.ref.eta or self.ref.next_update_due):
            self._remind()
        if not referred and not parsed.internal:
            self._tell_customer(parsed, accepted, resolved, eta_changed, previous_eta)
        if resolved:
            self._tell_frontline(parsed)
        return self.fx, self.t

    def _applicable(self, parsed: cmd.ParsedReply) -> cmd.ParsedReply:
        """Accepting and giving times belong to the group the ticket is referred to: from
        anyone else they are errors (so the transcript says so and nothing applies),
        not silently ignored."""
        if self.ref is not None:
            return parsed
        bad = tuple(cmd.CommandError(c.line, c.written, "this ticket is not referred to "
                                     "you: only the group it is with can accept it or "
                                     "give an ETA or next update")
                    for c in parsed.commands
                    if isinstance(c, cmd.Accept | cmd.Eta | cmd.NextUpdate))
        return replace(parsed, errors=(*parsed.errors, *bad)) if bad else parsed

    # -- pieces -----------------------------------------------------------------------
    def _ref(self, **changes: Any) -> None:
        """Keep the batch's view of the referral in step with the effects."""
        assert self.ref is not None
        new = replace(self.ref, **changes)
        self.t = replace(self.t, referrals=tuple(new if r is self.ref else r
                                                 for r in self.t.referrals))
        self.ref = new

    def _case_ref(self) -> None:
        g, ref = self.group, self.ref
        if g is None or ref is None or ref.external_ref or g.external_ref is None:
            return
        found = g.case_number(f"{self.msg.subject}\n{self.msg.new_text}")
        if found:
            self.fx.append(RecordCaseRef(self.t.id, ref.token, ref.group, found))
            self._ref(external_ref=found)

    def _transcript(self, parsed: cmd.ParsedReply) -> None:
        token = self.ref.token if self.ref else (
            self.t.reply_token if self.a.group == FRONTLINE else None)
        self.fx.append(QueueMail(MailRequest(
            kind=OutboxKind.TRANSCRIPT, template="command-transcript",
            recipient=self.msg.from_addr, ticket=self.t.id, token=token,
            in_reply_to=self.msg.message_id, auto_submitted="auto-replied",
            references=(*self.msg.references[-9:], self.msg.message_id)
            if self.msg.message_id else (),
            context={"subject": self.t.subject, "ticket": ticket_ctx(self.t, self.p),
                     "transcript": cmd.transcript(parsed)}),
            summary=f"command transcript to {self.msg.from_addr}"))

    def _accept(self) -> bool:
        if self.ref is None or self.ref.accepted_at is not None:
            return False
        self.fx.append(AcceptReferral(self.t.id, self.ref.token, self.ref.group, self.actor,
                                      self.received))
        self._ref(accepted_at=self.received)
        return True

    def _status(self, s: cmd.Status, written: str) -> bool:
        t = self.t
        want = {cmd.Status.RESOLVED: Status.RESOLVED,
                cmd.Status.WAITING_ON_CUSTOMER: Status.WAITING}.get(
            s, Status.REFERRED if t.referral else Status.OPEN)
        if t.status != want:
            self.fx.append(SetStatus(t.id, want, f"{written} by {self.actor}", self.actor,
                                     previous=t.status))
            self.t = replace(t, status=str(want))
        return s == cmd.Status.RESOLVED

    def _refer(self, name: str, reason: str) -> bool:
        g = self.p.groups.get(name)
        if name == FRONTLINE or g is None or not referable(g):
            r = back_to_frontline(self.t, reason, self.actor)
        else:
            r = refer(self.t, g, reason, self.actor, self.actor, self.new_token(),
                      self.received, self.p)
        self.fx += r.effects
        self.t = r.ticket
        self.ref = None
        return True

    def _remind(self) -> None:
        g = self.group
        if g is None or not g.address or self.ref is None:
            return
        self.fx.append(QueueMail(MailRequest(
            kind=OutboxKind.NOTICE, template="tier-reminder", recipient=g.address,
            ticket=self.t.id, token=self.ref.token, auto_submitted="auto-generated",
            context={"subject": self.t.subject, "ticket": ticket_ctx(self.t, self.p),
                     "group": group_ctx(g), "accepted_at": self.p.when(self.received)}),
            summary=f"reminder to {g.name}: accepted without #eta or #next-update"))

    def _tell_customer(self, parsed: cmd.ParsedReply, accepted: bool, resolved: bool,
                       eta_changed: bool, previous_eta: datetime | None) -> None:
        g = self.group if self.group is not None and self.group.name != FRONTLINE else None
        ref = self.ref
        common: dict[str, Any] = {
            "group": group_ctx(g) if g else group_ctx(self.p.groups.frontline),
            "update": {"text": parsed.relay_text}}
        when = self.p.when
        if resolved:
            fx = customer_mail(self.t, self.p, "status-resolved", "status update: resolved",
                               **common)
        elif accepted:
            fx = customer_mail(self.t, self.p, "status-accepted", "status update: accepted",
                               eta=when(ref.eta) if ref else None,
                               next_update=when(ref.next_update_due) if ref else None,
                               **common)
        elif eta_changed and ref is not None:
            fx = customer_mail(self.t, self.p, "status-eta-changed",
                               "status update: new expected resolution", eta=when(ref.eta),
                               previous_eta=when(previous_eta), **common)
        elif parsed.relay_text:
            fx = customer_mail(self.t, self.p, "status-update", "status update relayed",
                               eta=when(ref.eta) if ref else None,
                               next_update=when(ref.next_update_due) if ref else None,
                               **common)
        else:
            fx = []
        self.fx += fx

    def _tell_frontline(self, parsed: cmd.ParsedReply) -> None:
        """The resolution goes back to the front line: the next similar request is
        solved at first contact."""
        front = self.p.groups.frontline
        if not front.leader or self.a.group == FRONTLINE:
            return
        causes = [c.text for c in parsed.to_apply if isinstance(c, cmd.Cause)]
        prevent = [c.text for c in parsed.to_apply if isinstance(c, cmd.Prevention)]
        g = self.group or front
        self.fx.append(QueueMail(MailRequest(
            kind=OutboxKind.NOTICE, template="frontline-resolution", recipient=front.leader,
            ticket=self.t.id, token=self.t.reply_token, auto_submitted="auto-generated",
            context={"subject": self.t.subject, "ticket": ticket_ctx(self.t, self.p),
                     "group": group_ctx(g), "resolution": {
                         "text": parsed.public_text, "by": self.actor,
                         "cause": "; ".join(causes), "prevention": "; ".join(prevent)},
                     "customer": {"name": "", "address": self.t.requester}}),
            summary=f"resolution to the front line <{front.leader}>"))
