"""Linking by a referral's token: the ticket, and which group's token it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailflow.linking import (
    Action,
    LinkFacts,
    LinkPolicy,
    ReferralFacts,
    TicketFacts,
    decide,
    message_id_for,
    reply_address,
)
from mailflow.parse import parse
from tests.mails import mail

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
SUPPORT = "support@example.test"
POLICY = LinkPolicy(SUPPORT, frozenset({SUPPORT}), "SUP", timedelta(days=30))
OLD, CUR = "oldoldoldold", "curcurcurcur"
T = TicketFacts(7, "referred", "ticketticket", None, frozenset({"c@example.test"}), 3,
                "vendor", "c@example.test", "Slow", "technical",
                (ReferralFacts(1, "tier2", OLD, active=False), ReferralFacts(2, "vendor", CUR)))
FACTS = LinkFacts({7: T})


def test_a_referral_token_in_the_address_names_its_group() -> None:
    d = decide(parse(mail(sender="x@tier2.test", to=reply_address(SUPPORT, 7, CUR))), FACTS,
               POLICY, NOW)
    assert (d.action, d.ticket_id, d.token, d.group, d.token_current) == (
        Action.JOIN, 7, "referral", "vendor", True)


def test_an_ended_referrals_token_threads_but_is_not_current() -> None:
    mid = message_id_for(7, OLD, "example.test")
    d = decide(parse(mail(headers={"In-Reply-To": f"<{mid}>"})), FACTS, POLICY, NOW)
    assert (d.ticket_id, d.token, d.group, d.token_current) == (7, "referral", "tier2", False)


def test_the_tickets_own_token_is_no_groups() -> None:
    d = decide(parse(mail(to=reply_address(SUPPORT, 7, "ticketticket"))), FACTS, POLICY, NOW)
    assert (d.ticket_id, d.token, d.group, d.token_current) == (7, "ticket", None, True)


def test_a_guessed_token_threads_nothing() -> None:
    d = decide(parse(mail(to=reply_address(SUPPORT, 7, "guessedtoken"))), FACTS, POLICY, NOW)
    assert (d.action, d.token) == (Action.NEW, None)


def test_a_recorded_case_number_threads_what_the_store_matched() -> None:
    m = parse(mail(sender="noreply@vendor.test", subject="CASE-000001 closed"))
    facts = LinkFacts({7: T}, case_refs={m.dedupe_key: (7, "vendor", "CASE-000001")})
    d = decide(m, facts, POLICY, NOW)
    assert (d.action, d.ticket_id, d.token, d.group, d.token_current) == (
        Action.JOIN, 7, "case", "vendor", True)
