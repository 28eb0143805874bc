"""Who may act by mail command: member and token together, or the group's case number
from the group's domain; forged and misdirected replies never act."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailflow.authorise import Role, authorise
from mailflow.classify import load_groups

SHIPPED = Path(__file__).parents[2] / "rules"
TIERS = load_groups(SHIPPED)
CUSTOMERS = ("ann@customer.example",)


def test_member_with_valid_token_acts() -> None:
    w = authorise("Tom.Engineer@example.test", True, "tier2", TIERS, customers=CUSTOMERS)
    assert (w.role, w.group, w.may_act) == (Role.TIER, "tier2", True)
    assert w.address == "tom.engineer@example.test"


def test_leader_is_always_a_member() -> None:
    assert authorise("tina.lead@example.test", True, "tier2", TIERS).may_act


def test_forged_right_from_without_token() -> None:
    w = authorise("tom.engineer@example.test", False, "tier2", TIERS, customers=CUSTOMERS)
    assert (w.role, w.may_act) == (Role.TIER, False)
    assert "no valid token" in w.why and w.notify == "tina.lead@example.test"


def test_forged_right_token_from_wrong_from() -> None:
    w = authorise("mallory@evil.example", True, "tier2", TIERS, customers=CUSTOMERS)
    assert (w.role, w.may_act) == (Role.UNKNOWN, False)
    assert "tier2's token" in w.why and w.notify == "tina.lead@example.test"


def test_member_of_another_group_with_this_groups_token() -> None:
    w = authorise("cases@acme.example", True, "tier2", TIERS)
    assert (w.role, w.group, w.may_act) == (Role.TIER, "vendor-acme", False)
    assert "not for tier2" in w.why and w.notify == "tina.lead@example.test"


def test_customer_replying_to_a_forwarded_copy() -> None:
    w = authorise("ann@customer.example", True, "tier2", TIERS, customers=CUSTOMERS)
    assert (w.role, w.may_act) == (Role.CUSTOMER, False)
    assert "forwarded copy" in w.why and w.notify == "tina.lead@example.test"


def test_customer_on_the_ticket_token_is_a_normal_reply() -> None:
    w = authorise("ann@customer.example", True, "frontline", TIERS, customers=CUSTOMERS)
    assert (w.role, w.may_act, w.notify) == (Role.CUSTOMER, False, None)


def test_frontline_staff_need_a_token_too() -> None:
    ok = authorise("ann.agent@example.test", True, "frontline", TIERS, customers=CUSTOMERS)
    assert (ok.role, ok.group, ok.may_act) == (Role.FRONTLINE, "frontline", True)
    # Front-line staff may act on a referral's token: they own the referral process.
    assert authorise("ann.agent@example.test", True, "tier2", TIERS).may_act
    bad = authorise("ann.agent@example.test", False, "frontline", TIERS)
    assert not bad.may_act and bad.notify == "helpdesk-lead@example.test"


def test_case_number_from_the_groups_domain_acts_without_token() -> None:
    w = authorise("noreply@acme.example", False, "vendor-acme", TIERS, case_ref_valid=True)
    assert (w.role, w.group, w.may_act) == (Role.TIER, "vendor-acme", True)
    member = authorise("support@acme.example", False, "vendor-acme", TIERS,
                       case_ref_valid=True)
    assert member.may_act and "case number" in member.why


@pytest.mark.parametrize("sender", ["noreply@acme.example.evil.test", "x@notacme.example",
                                    "support@acme.example.com"])
def test_case_number_from_another_domain_does_not_act(sender: str) -> None:
    assert not authorise(sender, False, "vendor-acme", TIERS, case_ref_valid=True).may_act


def test_member_without_recorded_case_number_or_token_does_not_act() -> None:
    assert not authorise("support@acme.example", False, "vendor-acme", TIERS).may_act


def test_unknown_sender_without_group() -> None:
    w = authorise("someone@else.example", False, None, TIERS)
    assert (w.role, w.group, w.may_act) == (Role.UNKNOWN, None, False)
    assert w.notify == "helpdesk-lead@example.test"
