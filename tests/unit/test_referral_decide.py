"""The pure decisions of referrals and tier replies: for each case, the exact effects."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from mailflow.classify import Classification
from mailflow.classify.groups import FRONTLINE, Group, GroupsConfig, Objectives
from mailflow.linking import (
    LinkFacts,
    LinkPolicy,
    ReferralFacts,
    TicketFacts,
    message_id_for,
    reply_address,
)
from mailflow.parse import parse
from mailflow.prepare import Fetched, Prepared
from mailflow.tickets import EventKind, OutboxKind, Status, Writer
from mailflow.tickets.decide import IngestPolicy, SeverityPromise, Source, StoreFacts, decide_batch
from mailflow.tickets.effects import (
    AcceptReferral,
    AddMessage,
    Note,
    OpenTicket,
    QueueMail,
    RecordRating,
    Refer,
    SetEta,
    SetOwner,
    SetStatus,
    SkipAck,
)
from tests.mails import mail

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
RECEIVED = datetime(2026, 3, 2, 11, 59, tzinfo=UTC)
SUPPORT = "support@example.test"
CUSTOMER = "customer@example.test"
TIER2 = "tier2@example.test"
TOM = "tom@example.test"
LEAD = "lead@example.test"
TICKET_TOKEN = "abcdefghijkm"
REF_TOKEN = "nopqrstuvwxy"
OBJ = Objectives(timedelta(hours=2), timedelta(hours=8), timedelta(days=3))
GROUPS = GroupsConfig({
    FRONTLINE: Group(FRONTLINE, None, "the help desk", leader=LEAD,
                     members=frozenset({LEAD, "ann@example.test"})),
    "tier2": Group("tier2", TIER2, "Second-line support", leader="tina@example.test",
                   members=frozenset({"tina@example.test", TOM, TIER2}), fallback=FRONTLINE,
                   objectives={1: OBJ, 2: OBJ, 3: OBJ}),
    "vendor": Group("vendor", "help@vendor.example", "The vendor", leader="boss@vendor.example",
                    members=frozenset({"boss@vendor.example", "help@vendor.example"}),
                    objectives={1: OBJ, 2: OBJ, 3: OBJ}),
})
POLICY = IngestPolicy(
    link=LinkPolicy(SUPPORT, frozenset({SUPPORT}), "SUP", timedelta(days=30)),
    support_address=SUPPORT, ack_limit=3,
    severities={1: SeverityPromise("critical", "1 hour"), 2: SeverityPromise("high", "4 hours"),
                3: SeverityPromise("normal", "1 day")},
    max_attachment_size=10_000_000, groups=GROUPS)


def _prep(raw: bytes, owner: str = FRONTLINE, suppress: str | None = None) -> Prepared:
    cls = Classification(3, "technical", owner, (), ("database",) if owner != FRONTLINE
                         else (), (), "v1")
    return Prepared(Fetched(1, raw, RECEIVED), parse(raw), None, cls, suppress)


def _decide(p: Prepared, *tickets: TicketFacts) -> list[object]:
    tokens = iter(f"tok{n:09d}" for n in range(100))
    facts = StoreFacts(LinkFacts({t.id: t for t in tickets}))
    [d] = decide_batch([p], facts, POLICY, Source("support/INBOX", 7), NOW,
                       token=lambda: next(tokens))
    return list(d.effects)


def _kinds(effects: list[object]) -> list[str]:
    out = []
    for e in effects:
        name = type(e).__name__
        if isinstance(e, QueueMail):
            name += f":{e.request.template}"
        elif isinstance(e, Note):
            name += f":{e.data.get('what', e.kind)}"
        elif isinstance(e, SetStatus):
            name += f":{e.status}"
        out.append(name)
    return out


def _referred(status: str = "referred", **ref: object) -> TicketFacts:
    r = replace(ReferralFacts(3, "tier2", REF_TOKEN), **ref)  # type: ignore[arg-type]
    return TicketFacts(7, status, TICKET_TOKEN, None, frozenset({CUSTOMER}), 3, "tier2",
                       CUSTOMER, "Database slow", "technical", (r,))


def _from_tier(body: str, sender: str = TOM, token: str | None = REF_TOKEN,
               subject: str = "RE: Database slow [SUP-7]") -> bytes:
    to = reply_address(SUPPORT, 7, token) if token else SUPPORT
    headers = {"In-Reply-To": f"<{message_id_for(7, token, 'example.test')}>"} if token \
        else {}
    return mail(sender=sender, to=to, subject=subject, body=body, headers=headers)


def test_a_rule_that_gives_a_tier_group_refers_at_intake() -> None:
    raw = mail(subject="database is slow")
    fx = _decide(_prep(raw, owner="tier2"))
    assert _kinds(fx) == ["OpenTicket", "QueueMail:acknowledgment", "Refer", "SetStatus:referred",
                          "QueueMail:referral", "QueueMail:status-referred", "AddMessage"]
    opened, _, ref, status, referral, update, _ = fx
    assert isinstance(opened, OpenTicket) and opened.owner_group == "tier2"
    assert isinstance(ref, Refer) and (ref.ticket, ref.group, ref.token) == (
        -1, "tier2", "tok000000001")
    assert ref.token != opened.reply_token
    assert isinstance(status, SetStatus) and "rules database" in status.reason
    assert isinstance(referral, QueueMail)
    r = referral.request
    assert (r.kind, r.recipient, r.token, r.attach) == (
        OutboxKind.REFERRAL, TIER2, "tok000000001", (parse(raw).dedupe_key,))
    assert r.context["referral"]["objectives"] == {"accept": "2 hours", "update": "8 hours",
                                                   "resolve": "3 days"}
    assert r.context["referral"]["accept_due"] == "Mon 2026-03-02 13:59 (UTC)"
    assert r.context["history"][0]["text"].startswith("Hello")
    assert isinstance(update, QueueMail)
    u = update.request
    # A procedural notice, not a person's answer: it stops no SLA clock.
    assert (u.kind, u.recipient, u.token) == (OutboxKind.CUSTOMER_NOTICE, CUSTOMER,
                                             opened.reply_token)
    assert u.context["next_update"] == "Mon 2026-03-02 19:59 (UTC)"


def test_no_status_mail_where_no_acknowledgment_may_go() -> None:
    fx = _decide(_prep(mail(subject="database"), owner="tier2", suppress="Auto-Submitted"))
    assert _kinds(fx) == ["OpenTicket", "SkipAck", "Refer", "SetStatus:referred",
                          "QueueMail:referral", "AddMessage"]
    assert isinstance(fx[1], SkipAck)


def test_accept_with_eta_updates_the_customer_once_and_sends_a_transcript() -> None:
    body = "#accept\n#eta 4h\nWe are on it.\n\nOn Mon, support wrote:\n> old text"
    fx = _decide(_prep(_from_tier(body)), _referred())
    assert _kinds(fx) == ["AddMessage", "QueueMail:command-transcript", "AcceptReferral",
                          "SetEta", "QueueMail:status-accepted"]
    added, transcript, accept, eta, update = fx
    assert isinstance(added, AddMessage) and added.writer == Writer.TIER
    assert isinstance(transcript, QueueMail) and transcript.request.recipient == TOM
    assert transcript.request.kind == OutboxKind.TRANSCRIPT
    assert transcript.request.token == REF_TOKEN
    assert "Applied:" in transcript.request.context["transcript"]
    assert isinstance(accept, AcceptReferral) and accept.token == REF_TOKEN
    assert isinstance(eta, SetEta) and eta.eta == RECEIVED + timedelta(hours=4)
    assert isinstance(update, QueueMail)
    u = update.request
    assert (u.recipient, u.token) == (CUSTOMER, TICKET_TOKEN)
    assert u.context["eta"] == "Mon 2026-03-02 15:59 (UTC)"
    assert u.context["update"]["text"] == "We are on it."


def test_accept_without_a_time_reminds_the_group_at_once() -> None:
    fx = _decide(_prep(_from_tier("#accept\n")), _referred())
    assert _kinds(fx) == ["AddMessage", "QueueMail:command-transcript", "AcceptReferral",
                          "QueueMail:tier-reminder", "QueueMail:status-accepted"]
    reminder = fx[3]
    assert isinstance(reminder, QueueMail) and reminder.request.recipient == TIER2
    assert reminder.request.token == REF_TOKEN


def test_a_bad_command_changes_nothing_but_gets_a_transcript() -> None:
    fx = _decide(_prep(_from_tier("#accept\n#eta yesterday\nfixed soon")), _referred())
    assert _kinds(fx) == ["AddMessage", "QueueMail:command-transcript",
                          "Note:commands-rejected"]
    t = fx[1]
    assert isinstance(t, QueueMail) and "Nothing was applied" in t.request.context["transcript"]


def test_internal_reaches_nobody_outside() -> None:
    fx = _decide(_prep(_from_tier("#internal\n#cause bad index\nlooked at the logs")),
                 _referred())
    assert _kinds(fx) == ["AddMessage", "QueueMail:command-transcript", "Note:cause"]


def test_plain_public_text_is_relayed_without_transcript() -> None:
    fx = _decide(_prep(_from_tier("We found the slow query.")), _referred(
        accepted_at=RECEIVED))
    assert _kinds(fx) == ["AddMessage", "QueueMail:status-update"]


def test_resolution_goes_to_the_customer_and_the_front_line() -> None:
    body = "#status resolved\n#cause missing index\nAdded the index; fast again."
    fx = _decide(_prep(_from_tier(body)), _referred(accepted_at=RECEIVED))
    assert _kinds(fx) == ["AddMessage", "QueueMail:command-transcript",
                          "SetStatus:resolved", "Note:cause", "QueueMail:status-resolved",
                          "QueueMail:frontline-resolution"]
    front = fx[5]
    assert isinstance(front, QueueMail) and front.request.recipient == LEAD
    assert front.request.context["resolution"]["cause"] == "missing index"


def test_refer_on_to_another_group_ends_the_referral_with_a_new_token() -> None:
    fx = _decide(_prep(_from_tier("#refer vendor firmware bug\n")), _referred())
    assert _kinds(fx) == ["AddMessage", "QueueMail:command-transcript", "Refer",
                          "SetOwner", "QueueMail:referral", "QueueMail:status-referred"]
    ref, owner, mailed = fx[2], fx[3], fx[4]
    assert isinstance(ref, Refer) and (ref.group, ref.token) == ("vendor", "tok000000000")
    assert isinstance(owner, SetOwner) and (owner.previous, owner.group) == ("tier2", "vendor")
    assert isinstance(mailed, QueueMail) and mailed.request.recipient == "help@vendor.example"


def test_right_from_without_a_token_changes_nothing_and_tells_the_leader_once() -> None:
    raw = mail(sender=TOM, subject="Re: Database slow", body="#status resolved\n",
               headers={"In-Reply-To": "<orig@customer.test>"})
    t = _referred()
    tickets = StoreFacts(LinkFacts({7: t}, {"orig@customer.test": 7}))
    [d] = decide_batch([_prep(raw)], tickets, POLICY, Source(), NOW)
    assert _kinds(list(d.effects)) == ["AddMessage", "Note:refused",
                                       "QueueMail:forged-command-notice"]
    notice = d.effects[2]
    assert isinstance(notice, QueueMail) and notice.request.recipient == "tina@example.test"
    assert notice.request.dedupe_key == "forged:{ticket}"
    told = replace(t, sent_keys=frozenset({"forged:7"}))
    [d] = decide_batch([_prep(raw)], StoreFacts(LinkFacts({7: told}, {"orig@customer.test": 7})),
                       POLICY, Source(), NOW)
    assert _kinds(list(d.effects)) == ["AddMessage", "Note:refused"]


def test_right_token_from_a_wrong_from_changes_nothing() -> None:
    fx = _decide(_prep(_from_tier("#status resolved\n", sender="mallory@evil.example")),
                 _referred())
    assert _kinds(fx) == ["AddMessage", "Note:refused", "QueueMail:forged-command-notice"]
    added = fx[0]
    assert isinstance(added, AddMessage) and added.writer == Writer.UNKNOWN


def test_an_ended_referrals_token_threads_but_cannot_act() -> None:
    fx = _decide(_prep(_from_tier("#status resolved\n")), _referred(active=False))
    assert _kinds(fx) == ["AddMessage", "Note:refused", "QueueMail:forged-command-notice"]


def test_a_customer_reply_to_a_referred_ticket_goes_on_to_the_group() -> None:
    raw = mail(to=reply_address(SUPPORT, 7, TICKET_TOKEN), subject="Re: Database slow",
               body="It is slow again since 10:00.")
    fx = _decide(_prep(raw), _referred())
    assert _kinds(fx) == ["Note:customer-message", "AddMessage", "QueueMail:relay"]
    relay = fx[2]
    assert isinstance(relay, QueueMail)
    r = relay.request
    assert (r.kind, r.recipient, r.token) == (OutboxKind.RELAY, TIER2, REF_TOKEN)
    assert r.attach == (parse(raw).dedupe_key,)


def test_a_customer_with_a_forwarded_referral_cannot_act() -> None:
    fx = _decide(_prep(_from_tier("#status resolved\n", sender=CUSTOMER)), _referred())
    assert _kinds(fx) == ["AddMessage", "Note:refused", "QueueMail:forged-command-notice"]
    assert isinstance(fx[0], AddMessage) and fx[0].writer == Writer.CUSTOMER


def test_a_rating_on_a_resolved_ticket_is_recorded_without_reopening() -> None:
    raw = mail(to=reply_address(SUPPORT, 7, TICKET_TOKEN), subject="Re: resolved",
               body="4 thanks!")
    fx = _decide(_prep(raw), _referred(status=str(Status.RESOLVED)))
    assert _kinds(fx) == ["RecordRating", "AddMessage"]
    assert isinstance(fx[0], RecordRating) and (fx[0].value, fx[0].comment) == (4, "thanks!")
    raw = mail(to=reply_address(SUPPORT, 7, TICKET_TOKEN), subject="Re: resolved",
               body="2 printers are still broken")
    assert _kinds(_decide(_prep(raw), _referred(status=str(Status.RESOLVED))))[0] == "Reopen"


def test_frontline_staff_refer_by_command_with_the_tickets_token() -> None:
    t = TicketFacts(7, "open", TICKET_TOKEN, None, frozenset({CUSTOMER}), 3, FRONTLINE,
                    CUSTOMER, "Database slow", "technical")
    raw = mail(sender="ann@example.test", to=reply_address(SUPPORT, 7, TICKET_TOKEN),
               subject="Re: Database slow [SUP-7]", body="#refer tier2 needs a DBA\n")
    fx = _decide(_prep(raw), t)
    assert _kinds(fx) == ["AddMessage", "QueueMail:command-transcript", "Refer", "SetOwner",
                          "SetStatus:referred", "QueueMail:referral",
                          "QueueMail:status-referred"]
    assert isinstance(fx[0], AddMessage) and fx[0].writer == Writer.FRONTLINE
    assert fx[1].request.token == TICKET_TOKEN  # type: ignore[attr-defined]
    note_kinds = {e.kind for e in fx if isinstance(e, Note)}
    assert EventKind.CUSTOMER_MESSAGE not in note_kinds


def test_the_acknowledgment_subject_carries_one_tag_without_a_pile_of_re() -> None:
    fx = _decide(_prep(mail(subject="Re: RE: AW: printer [SUP-1] [SUP-2]")))
    [ack] = [e for e in fx if isinstance(e, QueueMail)]
    assert ack.request.context["message"]["subject"] == "printer"
    from mailflow.compose import Composer

    ctx = {**ack.request.context, "ticket": {**ack.request.context["ticket"], "ref": "SUP-3"},
           "reply_address": "support+3.x@example.test"}
    assert Composer(None).render("acknowledgment", ctx)[0] == "Re: printer [SUP-3]"


def test_a_vendor_system_without_our_headers_threads_and_acts_by_its_case_number() -> None:
    import re

    vendor = replace(GROUPS.groups["vendor"],
                     external_ref=re.compile(r"(?<![\w-])(?:CASE-\d{6})(?![\w-])", re.I))
    policy = replace(POLICY, groups=GroupsConfig({**GROUPS.groups, "vendor": vendor}))
    t = replace(_referred(), owner_group="vendor", referrals=(
        ReferralFacts(3, "vendor", REF_TOKEN, external_ref="CASE-123456"),))
    raw = mail(sender="noreply@vendor.example", subject="case-123456 updated",
               body="#status resolved\nFixed in firmware 2.1.")
    p = _prep(raw)
    assert p.msg is not None
    facts = StoreFacts(LinkFacts({7: t}, case_refs={p.msg.dedupe_key: (7, "vendor",
                                                                        "case-123456")}))
    [d] = decide_batch([p], facts, policy, Source(), NOW)
    assert d.outcome == "join"
    assert _kinds(list(d.effects)) == ["AddMessage", "QueueMail:command-transcript",
                                       "SetStatus:resolved", "QueueMail:status-resolved",
                                       "QueueMail:frontline-resolution"]
    # The same words from another domain thread nowhere (the store finds no case ref).
    other = _prep(mail(sender="x@elsewhere.example", subject="CASE-123456",
                       body="#status resolved"))
    [d] = decide_batch([other], StoreFacts(LinkFacts({7: t})), policy, Source(), NOW)
    assert d.outcome == "new"


def test_waiting_on_the_customer_ends_when_the_customer_writes() -> None:
    fx = _decide(_prep(_from_tier("#status waiting-on-customer\nWhich version do you run?")),
                 _referred(accepted_at=RECEIVED))
    assert _kinds(fx) == ["AddMessage", "QueueMail:command-transcript", "SetStatus:waiting",
                          "QueueMail:status-update"]
    assert fx[3].request.context["update"]["text"] == "Which version do you run?"  # type: ignore[attr-defined]
    raw = mail(to=reply_address(SUPPORT, 7, TICKET_TOKEN), subject="Re: Database slow",
               body="Version 14.2")
    fx = _decide(_prep(raw), _referred(status=str(Status.WAITING)))
    assert _kinds(fx) == ["SetStatus:referred", "Note:customer-message", "AddMessage",
                          "QueueMail:relay"]


def test_the_fast_subject_path_agrees_with_subjects_base_subject() -> None:
    from mailflow.subjects import base_subject
    from mailflow.tickets.wording import plain_subject

    for s in ["printer", " printer - ", "Re: x [SUP-1]", "a  b", "x\ty", "-", "", "[SUP-2]",
              "Fwd: AW: y", "über drucker", "a - b", "ends with -"]:
        assert plain_subject(s, "SUP") == base_subject(s, "SUP"), s


def test_automatic_mail_from_the_group_acts_only_by_commands_and_gets_nothing_back() -> None:
    ooo = _prep(_from_tier("I am out of the office until Monday."), suppress="Auto-Submitted")
    assert _kinds(_decide(ooo, _referred())) == ["AddMessage", "Note:automatic"]
    system = _prep(_from_tier("#status resolved\nFixed."), suppress="sender is automatic")
    assert _kinds(_decide(system, _referred(accepted_at=RECEIVED))) == [
        "AddMessage", "SetStatus:resolved", "QueueMail:status-resolved",
        "QueueMail:frontline-resolution"]


def test_staff_plain_words_without_a_token_are_kept_without_a_notice() -> None:
    raw = mail(sender=TOM, subject="Re: Database slow", body="I had a look, seems fine.",
               headers={"In-Reply-To": "<orig@customer.test>"})
    [d] = decide_batch([_prep(raw)], StoreFacts(LinkFacts({7: _referred()},
                                                          {"orig@customer.test": 7})),
                       POLICY, Source(), NOW)
    assert _kinds(list(d.effects)) == ["AddMessage", "Note:refused"]


def test_the_imported_backlog_is_not_referred_by_mail() -> None:
    tokens = iter(f"tok{n:09d}" for n in range(100))
    [d] = decide_batch([_prep(mail(subject="database"), owner="tier2")], StoreFacts(), POLICY,
                       Source("support/INBOX", 7, backlog_until_uid=5), NOW,
                       token=lambda: next(tokens))
    assert _kinds(list(d.effects)) == ["OpenTicket", "SkipAck", "AddMessage"]


def test_back_to_the_front_line_ends_the_referral() -> None:
    from mailflow.linking import ReferralFacts
    from mailflow.tickets.effects import EndReferrals
    from mailflow.tickets.referral import back_to_frontline

    t = TicketFacts(7, "referred", "abcdefghijkm", None, frozenset({CUSTOMER}), 3, "tier2",
                    CUSTOMER, "Printer", "technical",
                    (ReferralFacts(1, "tier2", "tok000000001"),))
    r = back_to_frontline(t, "not for tier 2", "ann.agent@example.test")
    assert isinstance(r.effects[0], EndReferrals) and r.effects[0].ticket == 7
    assert r.ticket.referral is None  # the old token no longer acts


def test_an_eta_from_someone_the_ticket_is_not_referred_to_is_refused_not_ignored() -> None:
    t = TicketFacts(7, "open", TICKET_TOKEN, None, frozenset({CUSTOMER}), 3, FRONTLINE,
                    CUSTOMER, "Database slow", "technical")
    raw = mail(sender="ann@example.test", to=reply_address(SUPPORT, 7, TICKET_TOKEN),
               subject="Re: Database slow [SUP-7]", body="#eta 4h\nWe are on it.\n")
    fx = _decide(_prep(raw), t)
    assert _kinds(fx)[:2] == ["AddMessage", "QueueMail:command-transcript"]
    transcript = fx[1].request.context["transcript"]  # type: ignore[attr-defined]
    assert "not referred to you" in transcript
    assert not any(type(e).__name__ in ("SetEta", "QueueMail:status-update") for e in fx)
    assert "QueueMail:status-update" not in _kinds(fx)  # nothing relayed either
