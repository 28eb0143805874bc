"""Who wrote a reply, and whether their mail commands may act: pure.

A From header proves nothing, and a token proves only that the writer saw our mail (a
customer may hold a forwarded copy of a referral). So commands act only when both
agree (docs/tier-commands.md):

- a member of the group (its leader included) **and** a valid token of that group's
  referral; or
- the group's own case number recorded on the ticket, from the group's own mail domain
  (a vendor's ticket system that drops our headers and writes from a no-reply address);
- front-line staff with any valid token of the ticket: they own the referral process.

Anything else (a right From without a token, a right token from a wrong From, a
customer replying to a forwarded copy) changes nothing: the caller keeps the mail as a
plain message, logs :attr:`Writer.why`, and tells :attr:`Writer.notify` (the group's
leader) once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from mailflow.classify.groups import FRONTLINE, GroupsConfig


class Role(StrEnum):
    CUSTOMER = "customer"
    FRONTLINE = "frontline"
    TIER = "tier"  # a member of a tier group (Writer.group says which)
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Writer:
    address: str
    role: Role
    group: str | None  # the group the writer acts for (tier and front line)
    may_act: bool  # commands in the mail may change the ticket
    why: str  # for the event trail, the log and the leader's notice
    notify: str | None = None  # whom to tell when commands are refused (a leader)


def authorise(sender: str, token_valid: bool, group: str | None, groups_config: GroupsConfig,
              *, customers: Collection[str] = (), case_ref_valid: bool = False) -> Writer:
    """Classify the writer of a reply and decide whether its commands may act.

    ``token_valid``: the mail carries a valid, current token (our reply address or
    Message-ID) for this ticket's referral to ``group`` (or, for ``frontline``, the
    ticket's own token). ``group``: the group that token, or the case number, belongs
    to; None when the mail names no group. ``customers``: the ticket's customer
    addresses. ``case_ref_valid``: the mail names the group's case number recorded on
    this ticket (see ``Group.case_number``).
    """
    addr = sender.strip().lower()
    g = groups_config.get(group)
    front = groups_config.frontline
    leader = (g.leader if g else None) or front.leader
    by_domain = bool(g and case_ref_valid and g.from_group_domain(addr))

    if g is not None and g.name != FRONTLINE and g.may_act(addr):
        if token_valid:
            return Writer(addr, Role.TIER, g.name, True,
                          f"{addr} acts for {g.name} with a valid token")
        if by_domain:
            return Writer(addr, Role.TIER, g.name, True,
                          f"{addr} acts for {g.name} with its case number")
        return Writer(addr, Role.TIER, g.name, False,
                      f"{addr} is a member of {g.name}, but the mail carries no valid token "
                      "(a forged From, or a reply to an old referral)", leader)
    if front.may_act(addr):
        if token_valid:
            return Writer(addr, Role.FRONTLINE, FRONTLINE, True,
                          f"{addr} is front-line staff with a valid token")
        return Writer(addr, Role.FRONTLINE, FRONTLINE, False,
                      f"{addr} is front-line staff, but the mail carries no valid token",
                      front.leader)
    if addr in {c.strip().lower() for c in customers}:
        held = f" (it carries {group}'s token: a forwarded copy?)" if token_valid and \
            group and group != FRONTLINE else ""
        return Writer(addr, Role.CUSTOMER, None, False,
                      f"{addr} is the ticket's customer; customers cannot use commands{held}",
                      leader if held else None)
    if by_domain and g is not None:
        return Writer(addr, Role.TIER, g.name, True,
                      f"{addr} writes from {g.name}'s domain with its case number")
    others = groups_config.groups_of(addr)
    if others:
        where = f"{group}'s token" if token_valid and group else "no valid token"
        return Writer(addr, Role.TIER, others[0], False,
                      f"{addr} acts for {', '.join(others)}, not for {group or 'this ticket'}"
                      f" (the mail carries {where})", leader)
    what = f"carries {group}'s token" if token_valid and group else "carries no valid token"
    return Writer(addr, Role.UNKNOWN, None, False,
                  f"{addr} is not allowed to act for {group or 'this ticket'} (the mail {what})",
                  leader)
