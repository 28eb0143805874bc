"""Escalation chains: offsets around due times in business time, once per clock episode,
guards (waiting, snoozed, resolved), late steps after downtime, separate chains per
category, and located validation of escalation.yaml."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailflow.classify import RulesError
from mailflow.escalation_chain import (
    EscalationConfig,
    StepKey,
    due_steps,
    held,
    load_escalation,
    next_step_time,
    parse_offset,
    plan_steps,
)
from mailflow.sla_policy import SlaConfig, load_sla
from mailflow.slaclock import (
    CustomerWrote,
    Fact,
    Opened,
    Responded,
    SeverityChanged,
    Snoozed,
    StatusChanged,
    TicketClocks,
    ticket_clocks,
)

BERLIN = ZoneInfo("Europe/Berlin")
SHIPPED = Path(__file__).parents[2] / "rules"
H = timedelta(hours=1)
SLA_YAML = """\
    calendars:
      office: {timezone: Europe/Berlin, hours: {mon-fri: "08:00-18:00"}}
    policies:
      - {name: p1, severity: 1, calendar: 24x7, first_response: 30m, update: 1h}
      - {name: p2, severity: [2, 3], calendar: office, first_response: 4h, update: 1d,
         resolution: 3d}
    """
CHAINS = """\
    late_after: 15m
    management: [boss@example.test]
    chains:
      technical:
        - {name: remind, clock: first_response, at: -25%, actions: [remind-owner]}
        - {name: missed, clock: first_response, at: 0, actions: [notify-leader,
           customer-update]}
        - {name: later, clock: first_response, at: +2h, actions: [refer-fallback,
           raise-severity, {notify: lead@example.test}]}
        - {name: update, clock: next_update, at: 0, actions: [remind-owner]}
      administrative:
        - {name: manager, clock: first_response, at: 0, actions: [notify-management]}
    """


@pytest.fixture(scope="module")
def sla(tmp_path_factory: pytest.TempPathFactory) -> SlaConfig:
    d = Path(tmp_path_factory.mktemp("rules"))
    (d / "sla.yaml").write_text(textwrap.dedent(SLA_YAML))
    return load_sla(d, groups={"frontline"}, lists={})


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> EscalationConfig:
    d = Path(tmp_path_factory.mktemp("rules"))
    (d / "escalation.yaml").write_text(textwrap.dedent(CHAINS))
    return load_escalation(d)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def clocks(sla: SlaConfig, now: datetime, *facts: Fact, category: str = "technical",
           severity: int = 2) -> TicketClocks:
    opened = Opened(at(2026, 3, 6, 15), severity, category, "frontline", "c@x.test")  # Fri
    return ticket_clocks([opened, *facts], sla, now)


def names(steps: list) -> list[str]:
    return [s.key.step for s in steps]


def test_offsets_in_business_time_around_the_due_time(sla: SlaConfig,
                                                      chains: EscalationConfig) -> None:
    # Friday 15:00 + 4h: due Monday 09:00. -25%: 3h used = Friday 18:00. +2h: Monday 11:00.
    assert due_steps(chains, clocks(sla, at(2026, 3, 6, 17, 59)), (), at(2026, 3, 6, 17, 59)) \
        == []
    fri = due_steps(chains, clocks(sla, at(2026, 3, 6, 18)), (), at(2026, 3, 6, 18))
    assert names(fri) == ["remind"] and not fri[0].late
    assert fri[0].moment == at(2026, 3, 6, 18)
    mon = at(2026, 3, 9, 11)
    due = due_steps(chains, clocks(sla, mon), {fri[0].key}, mon)
    assert names(due) == ["missed", "later"]
    assert [s.moment for s in due] == [at(2026, 3, 9, 9), at(2026, 3, 9, 11)]
    assert due[0].late and not due[1].late  # missed at 09:00 and nobody fired it until 11:00
    assert [str(a) for a in due[1].step.actions] == ["refer-fallback", "raise-severity",
                                                     "notify lead@example.test"]
    assert "first response due 2026-03-09 09:00 CET (target 4h, policy p2)" in due[0].reason
    assert "late: was due 2026-03-09 09:00 CET" in due[0].reason


def test_each_step_once_per_clock_episode(sla: SlaConfig, chains: EscalationConfig) -> None:
    now = at(2026, 3, 9, 12)
    tc = clocks(sla, now)
    fired = {s.key for s in due_steps(chains, tc, (), now)}
    assert fired == {StepKey("technical", n, "first_response", 0)
                     for n in ("remind", "missed", "later")}
    assert due_steps(chains, tc, fired, now) == []
    # Answered: the first-response clock stops, its steps are gone; next-update episodes.
    r1 = at(2026, 3, 9, 12, 30)
    tc = clocks(sla, at(2026, 3, 10, 13), Responded(r1))
    assert names(due_steps(chains, tc, fired, at(2026, 3, 10, 13))) == ["update"]
    key = due_steps(chains, tc, fired, at(2026, 3, 10, 13))[0].key
    assert key == StepKey("technical", "update", "next_update", 0)
    tc = clocks(sla, at(2026, 3, 11, 14), Responded(r1), Responded(at(2026, 3, 10, 14)))
    again = due_steps(chains, tc, {*fired, key}, at(2026, 3, 11, 14))
    assert [s.key.episode for s in again] == [1]


def test_guards_waiting_snoozed_resolved(sla: SlaConfig, chains: EscalationConfig) -> None:
    now = at(2026, 3, 9, 12)
    waiting = clocks(sla, now, StatusChanged(at(2026, 3, 6, 16), "waiting-on-customer"))
    assert due_steps(chains, waiting, (), now) == []
    assert held(waiting, now) == "the ticket waits on the customer"
    assert next_step_time(chains, waiting, (), now) is None
    snoozed = clocks(sla, now, Snoozed(at(2026, 3, 6, 16), at(2026, 3, 9, 14), "vendor"))
    assert due_steps(chains, snoozed, (), now) == [] and "snoozed" in (held(snoozed, now) or "")
    assert next_step_time(chains, snoozed, (), now) == at(2026, 3, 9, 14)
    # When the snooze ends the held steps fire at once, not marked late.
    after = at(2026, 3, 9, 14, 5)
    steps = due_steps(chains, clocks(sla, after, Snoozed(at(2026, 3, 6, 16), at(2026, 3, 9, 14))),
                      (), after)
    assert names(steps) == ["remind", "missed", "later"] and not any(s.late for s in steps)
    resolved = clocks(sla, now, StatusChanged(at(2026, 3, 9, 8, 30), "resolved"))
    assert due_steps(chains, resolved, (), now) == [] and held(resolved, now)


def test_waiting_shifts_the_moments(sla: SlaConfig, chains: EscalationConfig) -> None:
    # 1h used on Friday, waited until Monday 10:00: 3h left, due Monday 13:00.
    facts = (StatusChanged(at(2026, 3, 6, 16), "waiting-on-customer"),
             CustomerWrote(at(2026, 3, 9, 10)))
    tc = clocks(sla, at(2026, 3, 9, 12), *facts)
    assert names(due_steps(chains, tc, (), at(2026, 3, 9, 12))) == ["remind"]
    assert next_step_time(chains, tc, {StepKey("technical", "remind", "first_response", 0)},
                          at(2026, 3, 9, 12)) == at(2026, 3, 9, 13)


def test_severity_raised_makes_steps_due_at_once_not_late(sla: SlaConfig,
                                                          chains: EscalationConfig) -> None:
    raised = at(2026, 3, 9, 10)
    now = at(2026, 3, 9, 10, 5)
    tc = clocks(sla, now, SeverityChanged(raised, 1))
    steps = due_steps(chains, tc, (), now)
    assert names(steps) == ["remind", "missed", "later"]
    assert not any(s.late for s in steps)
    assert next_step_time(chains, tc, (), now) == now


def test_administrative_tickets_have_their_own_chain(sla: SlaConfig,
                                                     chains: EscalationConfig) -> None:
    now = at(2026, 3, 9, 12)
    steps = due_steps(chains, clocks(sla, now, category="administrative"), (), now)
    assert names(steps) == ["manager"] and steps[0].key.chain == "administrative"
    assert chains.management == ("boss@example.test",)


@pytest.mark.parametrize(("text", "percent", "business"), [
    ("-25%", -25.0, timedelta(0)), ("+50%", 50.0, timedelta(0)), ("0", None, timedelta(0)),
    ("+2h", None, 2 * H), ("-30m", None, -H / 2), ("1h30m", None, 1.5 * H),
])
def test_parse_offset(text: str, percent: float | None, business: timedelta) -> None:
    off = parse_offset(text)
    assert (off.percent, off.business) == (percent, business)


@pytest.mark.parametrize("text", ["soon", "-100%", "+2d", "", True])
def test_bad_offsets(text: object) -> None:
    with pytest.raises(ValueError):
        parse_offset(text)


def test_shipped_escalation_file_loads() -> None:
    cfg = load_escalation(SHIPPED)
    assert set(cfg.chains) == {"technical", "administrative"}
    assert cfg.late_after == 15 * 60 * timedelta(seconds=1)
    assert all(a.kind != "refer-fallback" for s in cfg.chains["administrative"]
               for a in s.actions)


def test_every_problem_located_at_once(tmp_path: Path) -> None:
    (tmp_path / "escalation.yaml").write_text(textwrap.dedent("""\
        late_after: 25%
        colour: red
        chains:
          technical:
            - name: a
              clock: first_reply
              at: soon
              actions: [remind-owner, shout]
            - {name: a, clock: resolution, at: 0, actions: [remind-owner]}
            - {name: b, clock: resolution, at: 0, actions: []}
            - {name: c, clock: resolution, at: 0, actions: [{notify: nobody}]}
          administrative:
            - {name: m, clock: first_response, at: 0, actions: [refer-fallback,
               notify-management]}
          sales: []
        """))
    with pytest.raises(RulesError) as err:
        load_escalation(tmp_path, display="rules")
    problems = [str(p) for p in err.value.problems]
    expected = [
        "rules/escalation.yaml:1: late_after: must be a time such as 15m",
        "rules/escalation.yaml:2: unknown key 'colour'",
        "rules/escalation.yaml:15: unknown chain 'sales'",
        "rules/escalation.yaml:6: chain technical, step a: clock must be one of",
        "rules/escalation.yaml:7: chain technical, step a: at: must be 0",
        "rules/escalation.yaml:8: chain technical, step a: unknown action 'shout'",
        "rules/escalation.yaml:9: chain technical: step name 'a' is already used at line 5",
        "rules/escalation.yaml:10: chain technical, step b: actions must be a non-empty list",
        "rules/escalation.yaml:11: chain technical, step c: notify: 'nobody' is not an email",
        "rules/escalation.yaml:13: chain administrative, step m: refer-fallback hands",
        "rules/escalation.yaml:1: a step notifies management, but `management:` lists no",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    assert len(problems) == len(expected), problems


def test_missing_chain_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "escalation.yaml").write_text("chains:\n  technical: []\n")
    with pytest.raises(RulesError) as err:
        load_escalation(tmp_path, display="rules")
    assert [str(p) for p in err.value.problems] == [
        "rules/escalation.yaml:2: chains: administrative is missing (write "
        "`administrative: []` for no automatic escalation)"]
    (tmp_path / "escalation.yaml").unlink()
    with pytest.raises(RulesError, match="file not found"):
        load_escalation(tmp_path)


def test_clocks_measured_at_another_time_give_the_same_steps(sla: SlaConfig,
                                                             chains: EscalationConfig) -> None:
    # due_steps takes a shortcut when the clocks were measured at the same ``now``.
    from dataclasses import replace

    facts = (Responded(at(2026, 3, 9, 9, 30)),)
    for hours in range(0, 80, 3):
        now = at(2026, 3, 6, 15) + timedelta(hours=hours)
        tc = clocks(sla, now, *facts)
        other = replace(tc, evaluated_at=None)
        assert due_steps(chains, tc, (), now) == due_steps(chains, other, (), now), hours
        assert next_step_time(chains, tc, (), now) == next_step_time(chains, other, (), now)


HISTORIES: list[tuple[Fact, ...]] = [
    (),
    (StatusChanged(at(2026, 3, 6, 16), "waiting-on-customer"), CustomerWrote(at(2026, 3, 9, 10))),
    (StatusChanged(at(2026, 3, 6, 16), "waiting-on-customer"),),
    (Snoozed(at(2026, 3, 6, 16), at(2026, 3, 9, 14), "vendor"),),
    (SeverityChanged(at(2026, 3, 9, 10), 1),),
    (Responded(at(2026, 3, 9, 9)),),
    (StatusChanged(at(2026, 3, 9, 8, 30), "resolved"),),
]


@pytest.mark.parametrize("facts", HISTORIES)
def test_plan_is_due_steps_then_the_next_step_time(sla: SlaConfig, chains: EscalationConfig,
                                                   facts: tuple[Fact, ...]) -> None:
    """The scheduler's one pass gives what due_steps and next_step_time give, the latter
    asked once the due steps have fired (each hour over five days, and with some steps
    already fired)."""
    now = at(2026, 3, 6, 15)
    fired: set[StepKey] = set()
    while now < at(2026, 3, 11, 15):
        tc = clocks(sla, now, *[f for f in facts if f.at <= now])
        plan = plan_steps(chains, tc, fired, now)
        due = due_steps(chains, tc, fired, now)
        assert list(plan.due) == due
        assert plan.next_at == next_step_time(chains, tc, fired | {d.key for d in due}, now)
        if now.hour % 2:  # fire them on odd hours only: unfired due steps wait
            fired |= {d.key for d in due}
        now += H
