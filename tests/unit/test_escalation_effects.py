"""What escalation steps, people's escalations and snoozes do to a ticket: pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailflow.classify.groups import load_groups
from mailflow.escalation import (
    MAX_SNOOZE,
    StepContext,
    fold_step_mails,
    manual_effects,
    request_effects,
    snooze_effects,
    step_effects,
)
from mailflow.escalation_chain import due_steps, load_escalation
from mailflow.linking import TicketFacts
from mailflow.sla_history import EventRow, facts_of
from mailflow.sla_policy import load_sla
from mailflow.slaclock import Snoozed, accept_objectives, ticket_clocks
from mailflow.tickets import EventKind, OutboxKind
from mailflow.tickets.effects import MailRequest, Note, QueueMail, Refer, SetSeverity
from mailflow.tickets.referral import TierPolicy

RULES = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # Wednesday
GROUPS = load_groups(RULES)
TIER = TierPolicy("support@example.test", GROUPS, UTC, {1: "critical", 2: "high", 3: "normal"})
T = TicketFacts(7, "open", "abcdefghijkm", None, frozenset({"c@x.test"}), 3, "tier2",
                "c@x.test", "Printer", "technical")


def _mails(fx: Sequence[object]) -> list[MailRequest]:
    return [e.request for e in fx if isinstance(e, QueueMail)]


def test_person_escalates_to_a_group_refers_and_tells_everyone() -> None:
    fx = manual_effects(T, GROUPS.get("vendor-acme"), "disk firmware bug", "ann.agent@x",
                        NOW, GROUPS, TIER, "tok000000001", ("service-manager@example.test",))
    assert isinstance(fx[0], Note) and fx[0].kind == EventKind.ESCALATED
    assert fx[0].data["by"] == "ann.agent@x" and fx[0].data["group"] == "vendor-acme"
    assert any(isinstance(e, Refer) and e.group == "vendor-acme" for e in fx)
    kinds = [(m.kind, m.recipient) for m in _mails(fx)]
    assert (OutboxKind.REFERRAL, "support@acme.example") in kinds
    assert (OutboxKind.NOTICE, "helpdesk-lead@example.test") in kinds
    assert (OutboxKind.NOTICE, "service-manager@example.test") in kinds
    assert (OutboxKind.CUSTOMER_NOTICE, "c@x.test") in kinds


def test_person_escalates_without_group_lets_the_lead_decide() -> None:
    fx = manual_effects(T, None, "customer very unhappy", "bob.agent@x", NOW, GROUPS, TIER,
                        "tok000000001")
    assert not any(isinstance(e, Refer) for e in fx)
    assert [m.recipient for m in _mails(fx) if m.kind == OutboxKind.NOTICE] == [
        "helpdesk-lead@example.test"]


def test_snooze_is_capped_and_holds_automatic_steps() -> None:
    [note] = snooze_effects(T, NOW + timedelta(days=30), "waiting for the vendor", "tom@x", NOW)
    assert isinstance(note, Note) and note.data["what"] == "snoozed"
    assert datetime.fromisoformat(note.data["until"]) == NOW + MAX_SNOOZE
    events = [EventRow("opened", NOW - timedelta(days=3),
                       {"severity": 3, "category": "technical", "owner_group": "tier2"}),
              EventRow("note", NOW, dict(note.data))]
    facts = facts_of(events, "c@x.test", {})
    assert any(isinstance(f, Snoozed) for f in facts)
    sla = load_sla(RULES, tz=UTC)
    esc = load_escalation(RULES)
    tc = ticket_clocks(facts, sla, NOW + timedelta(hours=1))
    assert due_steps(esc, tc, set(), NOW + timedelta(hours=1)) == []
    after = NOW + MAX_SNOOZE + timedelta(hours=1)
    tc = ticket_clocks(facts, sla, after)
    assert due_steps(esc, tc, set(), after)  # attention comes back when it ends


def test_due_step_actions_become_effects() -> None:
    sla = load_sla(RULES, tz=UTC)
    esc = load_escalation(RULES)
    events = [EventRow("opened", NOW - timedelta(days=3),
                       {"severity": 3, "category": "technical", "owner_group": "tier2"})]
    tc = ticket_clocks(facts_of(events, "c@x.test", {}), sla, NOW)
    due = due_steps(esc, tc, set(), NOW)
    assert due, "a three-day-old unanswered ticket has due steps"
    ctx = StepContext(T, NOW - timedelta(days=3), tc, GROUPS, esc, TIER, NOW)
    fx = step_effects(due[0], ctx, "tok000000002")
    assert isinstance(fx[0], Note) and fx[0].kind == EventKind.ESCALATED
    assert fx[0].data["age_seconds"] == 3 * 86400
    assert all(m.dedupe_key and m.dedupe_key.startswith("esc:{ticket}:") for m in _mails(fx))
    # The step's event names its mails; they leave no mail-queued event of their own.
    queued = [e for e in fx if isinstance(e, QueueMail)]
    assert queued and not any(e.event for e in queued)
    assert fx[0].data["mails"] == [{"to": e.request.recipient, "template": e.request.template,
                                    "role": e.request.context.get("role", "customer")}
                                   for e in queued]
    raise_step = [d for d in due if any(a.kind == "raise-severity" for a in d.step.actions)]
    for d in raise_step:
        assert any(isinstance(e, SetSeverity) and e.severity == 2
                   for e in step_effects(d, ctx, "tok000000003"))


def test_steps_fired_together_mail_each_person_once_the_last_step_wins() -> None:
    """Down for three days: every first-response and accept step of a ticket referred to
    a vendor is due at once. Each still fires with its event, but the owner group, the leader and
    the customer get one mail each (the last step's), the referral to the fallback is
    kept, and each folded mail is named in its step's event as superseded."""
    sla = load_sla(RULES, tz=UTC)
    esc = load_escalation(RULES)
    events = [EventRow("opened", NOW - timedelta(days=3),
                       {"severity": 3, "category": "technical", "owner_group": "vendor-acme"}),
              EventRow("note", NOW - timedelta(days=3),
                       {"what": "referred", "group": "vendor-acme"})]
    tc = ticket_clocks(facts_of(events, "c@x.test", {}), sla, NOW,
                       accept_objectives(GROUPS.groups))
    due = due_steps(esc, tc, set(), NOW)
    ctx = StepContext(replace(T, owner_group="vendor-acme"), NOW - timedelta(days=3), tc,
                      GROUPS, esc, TIER, NOW)
    fired = [(d.step.name, step_effects(d, ctx, f"tok{i:09d}")) for i, d in enumerate(due)]
    separately = [m for _, fx in fired for m in _mails(fx)]
    folded = fold_step_mails(fired)
    mails = _mails(folded)
    step_mails = [m for m in mails if m.template in ("escalation-notice", "status-escalated")]
    # Without folding someone would have been mailed twice: the test means something.
    assert len({m.recipient for m in separately}) < len(separately)
    assert len({m.recipient for m in step_mails}) == len(step_mails)
    assert {m.recipient for m in step_mails} == {
        m.recipient for m in separately if m.template in ("escalation-notice",
                                                         "status-escalated")}
    # The referral to the fallback (tier 2) is never folded.
    referrals = [m for m in separately if m.kind == OutboxKind.REFERRAL]
    assert [m.recipient for m in referrals] == ["tier2@example.test"]
    assert [m for m in mails if m.kind == OutboxKind.REFERRAL] == referrals
    notes = [e for e in folded if isinstance(e, Note) and e.kind == EventKind.ESCALATED]
    assert [n.data["step"] for n in notes] == [d.step.name for d in due]
    superseded = [m for n in notes for m in n.data["mails"] if "superseded_by" in m]
    assert len(superseded) == len(separately) - len(mails)
    kept_by = {m.recipient: m.dedupe_key for m in step_mails}
    for m in superseded:
        assert kept_by[m["to"]] is not None and f":{m['superseded_by']}:" in kept_by[m["to"]]
    # One step alone is left as it is.
    assert fold_step_mails(fired[:1]) == fired[0][1]


def test_one_mail_per_person_within_a_step() -> None:
    """The management group's leader is also the management address: a technical ticket
    it owns reaches resolution-missed (notify-leader and notify-management). One mail,
    not two with the same dedupe key (the outbox's unique key would fail the tick)."""
    sla = load_sla(RULES, tz=UTC)
    esc = load_escalation(RULES)
    events = [EventRow("opened", NOW - timedelta(days=40),
                       {"severity": 3, "category": "technical", "owner_group": "management"})]
    tc = ticket_clocks(facts_of(events, "c@x.test", {}), sla, NOW)
    due = [d for d in due_steps(esc, tc, set(), NOW) if d.step.name == "resolution-missed"]
    assert due, "a forty-day-old ticket has missed its resolution"
    ctx = StepContext(replace(T, owner_group="management"), NOW - timedelta(days=40), tc,
                      GROUPS, esc, TIER, NOW)
    fx = step_effects(due[0], ctx, "tok000000009")
    keys = [m.dedupe_key for m in _mails(fx)]
    assert [m.recipient for m in _mails(fx)] == ["service-manager@example.test"]
    assert len(keys) == len(set(keys))


def test_a_customer_request_and_a_step_in_one_tick_send_one_escalated_update() -> None:
    """The first response is missed (the step tells the customer) and the customer's
    request to escalate is handled in the same tick (it tells the customer too): one
    "escalated" mail, the request's; the step's is listed as superseded."""
    sla = load_sla(RULES, tz=UTC)
    esc = load_escalation(RULES)
    events = [EventRow("opened", NOW - timedelta(days=3),
                       {"severity": 3, "category": "technical", "owner_group": "tier2"})]
    tc = ticket_clocks(facts_of(events, "c@x.test", {}), sla, NOW)
    ctx = StepContext(T, NOW - timedelta(days=3), tc, GROUPS, esc, TIER, NOW)
    missed = [d for d in due_steps(esc, tc, set(), NOW)
              if d.step.name == "first-response-missed"]
    fired = [(missed[0].step.name, step_effects(missed[0], ctx, "tok000000010")),
             ("request-77", request_effects(77, NOW - timedelta(hours=1), ctx))]
    customer = [m for m in _mails(fold_step_mails(fired)) if m.recipient == "c@x.test"]
    assert len(customer) == 1 and customer[0].template == "status-escalated"
    assert customer[0].dedupe_key == "esc:{ticket}:request:77:c@x.test"
    step_note = fold_step_mails(fired)[0]
    assert isinstance(step_note, Note)
    assert {"to": "c@x.test", "template": "status-escalated", "role": "customer",
            "superseded_by": "request-77"} in step_note.data["mails"]
