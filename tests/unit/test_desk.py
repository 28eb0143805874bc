"""The desk's actions as effects, from a ticket as it is: what each builds and refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailflow import desk
from mailflow.linking import TicketFacts
from mailflow.tickets import EventKind, Status
from mailflow.tickets.effects import Note, Reopen, SetOwner, SetStatus

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
BY = "cli:ann"
GROUPS = frozenset({"frontline", "tier2", "vendor-acme"})


def _t(status: str = "open", owner: str | None = "frontline") -> TicketFacts:
    return TicketFacts(7, status, "tok", None, frozenset({"c@example.test"}), 3, owner)


def test_actor_names_the_user() -> None:
    assert desk.actor({"USER": "ann"}) == "cli:ann"
    assert desk.actor({"LOGNAME": "bob"}) == "cli:bob"
    assert desk.actor({}).startswith("cli:")


@pytest.mark.parametrize("status", ["open", "referred", "waiting"])
def test_resolve_an_open_ticket(status: str) -> None:
    assert desk.resolve(_t(status), BY) == [
        SetStatus(7, Status.RESOLVED, "resolved from the command line", BY, previous=status)]


def test_resolve_with_a_note_keeps_it_as_an_internal_note() -> None:
    fx = desk.resolve(_t(), BY, "  replaced the toner  ")
    assert fx[1] == Note(7, EventKind.NOTE, "replaced the toner", BY)


@pytest.mark.parametrize(("status", "says"), [
    ("resolved", "SUP-7 is already resolved"),
    ("closed", "SUP-7 is closed: reopen it first to resolve it again")])
def test_resolve_refuses_a_resolved_or_closed_ticket(status: str, says: str) -> None:
    with pytest.raises(desk.DeskError, match=f"^{says}$"):
        desk.resolve(_t(status), BY)


def test_close_from_any_status_but_closed() -> None:
    assert desk.close(_t("resolved"), BY) == [
        SetStatus(7, Status.CLOSED, "closed from the command line", BY, previous="resolved")]
    with pytest.raises(desk.DeskError, match="already closed"):
        desk.close(_t("closed"), BY, prefix="HD")


@pytest.mark.parametrize("status", ["resolved", "closed"])
def test_reopen_a_resolved_or_closed_ticket(status: str) -> None:
    assert desk.reopen(_t(status), BY, " customer called ", NOW) == [
        Reopen(7, NOW, "customer called", BY)]


@pytest.mark.parametrize("status", ["open", "referred", "waiting"])
def test_reopen_refuses_an_open_ticket(status: str) -> None:
    with pytest.raises(desk.DeskError, match=f"not resolved or closed \\(status {status}\\)"):
        desk.reopen(_t(status), BY, "why", NOW)


def test_reopen_needs_a_reason() -> None:
    with pytest.raises(desk.DeskError, match="needs a reason"):
        desk.reopen(_t("resolved"), BY, "  ", NOW)


def test_assign_to_a_known_group() -> None:
    assert desk.assign(_t(), "tier2", GROUPS, BY) == [
        SetOwner(7, "tier2", "assigned from the command line", BY, previous="frontline")]
    assert desk.assign(_t(owner=None), "tier2", GROUPS, BY, "disk array")[0].reason == \
        "disk array"


@pytest.mark.parametrize(("ticket", "group", "says"), [
    (_t(), "tier9", "unknown group 'tier9' \\(known: frontline, tier2, vendor-acme\\)"),
    (_t(), "frontline", "SUP-7 is already owned by frontline"),
    (_t("closed"), "tier2", "SUP-7 is closed: reopen it first to assign it")])
def test_assign_refuses(ticket: TicketFacts, group: str, says: str) -> None:
    with pytest.raises(desk.DeskError, match=f"^{says}$"):
        desk.assign(ticket, group, GROUPS, BY)


@pytest.mark.parametrize("status", ["open", "resolved", "closed"])
def test_note_on_any_ticket(status: str) -> None:
    assert desk.note(_t(status), "called back", BY) == [
        Note(7, EventKind.NOTE, "called back", BY)]


def test_empty_note_is_refused() -> None:
    with pytest.raises(desk.DeskError, match="empty note"):
        desk.note(_t(), " \n", BY)
