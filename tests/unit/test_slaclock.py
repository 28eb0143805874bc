"""SLA clocks, pure with ``now`` passed in: business hours, weekends, holidays, DST in both
directions, pauses while waiting on the customer, a severity change mid-ticket,
reopening, referrals, and the explanation of every due time."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailflow.sla_policy import SlaConfig, load_sla
from mailflow.slaclock import (
    Accepted,
    CustomerWrote,
    Opened,
    Referred,
    Responded,
    SeverityChanged,
    Snoozed,
    StatusChanged,
    instant_at,
    ticket_clocks,
)
from mailflow.slaexplain import explain

BERLIN = ZoneInfo("Europe/Berlin")
H = timedelta(hours=1)
M = timedelta(minutes=1)
SLA_YAML = """\
    calendars:
      office:
        timezone: Europe/Berlin
        hours: {mon-fri: "08:00-18:00"}
        holidays: {country: DE, subdiv: BE, dates: [2026-12-24]}
    policies:
      - {name: p1, severity: 1, calendar: 24x7, first_response: 30m, update: 1h,
         resolution: 4h}
      - {name: p2, severity: 2, calendar: office, first_response: 4h, update: 1d,
         resolution: 3d}
      - {name: p3, severity: 3, calendar: office, first_response: 1d, update: 2d,
         resolution: 1w}
    """


@pytest.fixture(scope="module")
def sla(tmp_path_factory: pytest.TempPathFactory) -> SlaConfig:
    d = Path(tmp_path_factory.mktemp("rules"))
    (d / "sla.yaml").write_text(textwrap.dedent(SLA_YAML))
    return load_sla(d, groups={"frontline", "tier2"}, lists={})


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def opened(when: datetime, severity: int = 2) -> Opened:
    return Opened(when, severity, "technical", "frontline", "ann@customer.test")


def test_first_response_in_business_hours_running_then_met_or_breached(sla: SlaConfig) -> None:
    h = [opened(at(2026, 3, 2, 10))]  # Monday
    fr = ticket_clocks(h, sla, at(2026, 3, 2, 12)).clock("first_response")
    assert fr is not None and fr.state == "running" and fr.due == at(2026, 3, 2, 14)
    assert fr.consumed == 2 * H and fr.remaining == 2 * H and fr.policy == "p2"
    met = ticket_clocks([*h, Responded(at(2026, 3, 2, 13))], sla, at(2026, 3, 3, 9))
    assert met.clock("first_response").met  # type: ignore[union-attr]
    late = ticket_clocks([*h, Responded(at(2026, 3, 2, 15))], sla, at(2026, 3, 3, 9))
    fr = late.clock("first_response")
    assert fr is not None and fr.breached and fr.stopped == at(2026, 3, 2, 15)
    overdue = ticket_clocks(h, sla, at(2026, 3, 2, 14, 1)).clock("first_response")
    assert overdue is not None and overdue.breached and overdue.stopped is None


def test_weekend_and_night_are_not_counted(sla: SlaConfig) -> None:
    tc = ticket_clocks([opened(at(2026, 3, 6, 16))], sla, at(2026, 3, 7, 12))  # Friday
    assert tc.clock("first_response").due == at(2026, 3, 9, 10)  # type: ignore[union-attr]
    assert tc.clock("first_response").state == "running"  # type: ignore[union-attr]
    # Severity 3: one business day, from Saturday: Monday 08:00 + 10h = Monday 18:00.
    tc3 = ticket_clocks([opened(at(2026, 3, 7, 11), 3)], sla, at(2026, 3, 7, 12))
    assert tc3.clock("first_response").due == at(2026, 3, 9, 18)  # type: ignore[union-attr]


def test_holidays_explicit_and_public(sla: SlaConfig) -> None:
    # Wed 2026-12-23 16:00 + 4h: 2h Wednesday; 24th listed, 25th/26th public, 27th Sunday.
    tc = ticket_clocks([opened(at(2026, 12, 23, 16))], sla, at(2026, 12, 23, 17))
    assert tc.clock("first_response").due == at(2026, 12, 28, 10)  # type: ignore[union-attr]
    lines = "\n".join(explain(tc, at(2026, 12, 23, 17)))
    assert "Thu 2026-12-24 holiday" in lines and "Christmas Day" in lines
    assert "Sun closed" in lines


def test_dst_spring_forward(sla: SlaConfig) -> None:
    # Business hours: Friday 17:00 CET + 4h -> Monday 11:00 CEST (1h Fri, 3h Mon).
    tc = ticket_clocks([opened(at(2026, 3, 27, 17))], sla, at(2026, 3, 27, 18))
    assert tc.clock("first_response").due == at(2026, 3, 30, 11)  # type: ignore[union-attr]
    # 24x7: 01:45 CET + 30 real minutes is 03:15 CEST (02:xx does not exist that night).
    tc1 = ticket_clocks([opened(at(2026, 3, 29, 1, 45), 1)], sla, at(2026, 3, 29, 1, 50))
    due = tc1.clock("first_response").due  # type: ignore[union-attr]
    assert due == datetime(2026, 3, 29, 1, 15, tzinfo=UTC) == at(2026, 3, 29, 3, 15)
    # Resolution 4h from 00:30 CET: 05:30 CEST on the wall clock.
    tc1 = ticket_clocks([opened(at(2026, 3, 29, 0, 30), 1)], sla, at(2026, 3, 29, 1))
    assert tc1.clock("resolution").due == at(2026, 3, 29, 5, 30)  # type: ignore[union-attr]


def test_dst_fall_back(sla: SlaConfig) -> None:
    # 24x7: 02:45 CEST (first pass) + 30m = 02:15 CET (second pass), 30 real minutes.
    tc = ticket_clocks([opened(at(2026, 10, 25, 2, 45), 1)], sla, at(2026, 10, 25, 2, 50))
    due = tc.clock("first_response").due  # type: ignore[union-attr]
    # (Ambiguous local times never compare equal across zones, so compare the text.)
    assert due == datetime(2026, 10, 25, 1, 15, tzinfo=UTC)
    assert f"{due.astimezone(BERLIN):%H:%M %Z}" == "02:15 CET"
    # Resolution 4h from 00:30 CEST: 03:30 CET on the wall clock (the hour repeats).
    tc = ticket_clocks([opened(at(2026, 10, 25, 0, 30), 1)], sla, at(2026, 10, 25, 0, 40))
    assert tc.clock("resolution").due == at(2026, 10, 25, 3, 30)  # type: ignore[union-attr]
    # Business hours: Friday 17:00 CEST + 4h -> Monday 11:00 CET.
    tc = ticket_clocks([opened(at(2026, 10, 23, 17))], sla, at(2026, 10, 23, 18))
    assert tc.clock("first_response").due == at(2026, 10, 26, 11)  # type: ignore[union-attr]


def test_waiting_on_customer_pauses_and_the_customer_resumes(sla: SlaConfig) -> None:
    h = [opened(at(2026, 3, 2, 10)), StatusChanged(at(2026, 3, 2, 11), "waiting-on-customer")]
    paused = ticket_clocks(h, sla, at(2026, 3, 3, 16))
    fr = paused.clock("first_response")
    assert fr is not None and fr.state == "paused" and fr.due is None
    assert fr.consumed == 1 * H and paused.waiting and paused.next_due is None
    assert instant_at(fr, 30 * M) == at(2026, 3, 2, 10, 30)  # before the pause: known
    # The customer writes Wednesday 09:00: 1h used, 3h left -> Wednesday 12:00.
    resumed = ticket_clocks([*h, CustomerWrote(at(2026, 3, 4, 9))], sla, at(2026, 3, 4, 10))
    fr = resumed.clock("first_response")
    assert fr is not None and fr.state == "running" and fr.due == at(2026, 3, 4, 12)
    assert fr.paused == 7 * H + 10 * H + 1 * H  # Mon 11-18, Tue 8-18, Wed 8-9
    assert resumed.status == "open" and resumed.next_due == at(2026, 3, 4, 12)
    # A status change ends the wait the same way.
    by_status = ticket_clocks([*h, StatusChanged(at(2026, 3, 4, 9), "in-progress")], sla,
                              at(2026, 3, 4, 10))
    assert by_status.clock("first_response").due == at(2026, 3, 4, 12)  # type: ignore[union-attr]


def test_a_pause_after_the_breach_does_not_hide_it(sla: SlaConfig) -> None:
    h = [opened(at(2026, 3, 2, 10)), StatusChanged(at(2026, 3, 2, 15), "waiting-on-customer")]
    fr = ticket_clocks(h, sla, at(2026, 3, 2, 16)).clock("first_response")
    assert fr is not None and fr.breached and fr.due == at(2026, 3, 2, 14)


def test_severity_raised_mid_ticket_retargets_from_the_original_start(sla: SlaConfig) -> None:
    h = [opened(at(2026, 3, 2, 9), 3), SeverityChanged(at(2026, 3, 2, 11), 1)]
    before = ticket_clocks(h, sla, at(2026, 3, 2, 10, 30))
    # One business day (10h): Monday 9-18, then Tuesday 08:00-09:00.
    assert before.policy.name == "p3" and before.clock("first_response").due == \
        at(2026, 3, 3, 9)  # type: ignore[union-attr]
    after = ticket_clocks(h, sla, at(2026, 3, 2, 11, 5))
    fr = after.clock("first_response")
    assert after.policy.name == "p1" and after.severity == 1
    assert fr is not None and fr.due == at(2026, 3, 2, 9, 30) and fr.breached
    assert fr.calendar.always_open and fr.targeted_at == at(2026, 3, 2, 11)
    assert after.reclassified == ((at(2026, 3, 2, 11).astimezone(UTC), "p1"),)
    assert "reclassified" in "\n".join(explain(after, at(2026, 3, 2, 11, 5)))


def test_severity_lowered_mid_ticket_extends_from_the_original_start(sla: SlaConfig) -> None:
    h = [opened(at(2026, 3, 2, 9), 2), SeverityChanged(at(2026, 3, 2, 10), 3)]
    fr = ticket_clocks(h, sla, at(2026, 3, 2, 12)).clock("first_response")
    assert fr is not None and fr.due == at(2026, 3, 3, 9) and fr.state == "running"


def test_next_update_episodes_and_resolution_with_reopening(sla: SlaConfig) -> None:
    h = [opened(at(2026, 3, 2, 9)), Responded(at(2026, 3, 2, 10)),
         Responded(at(2026, 3, 3, 9))]
    tc = ticket_clocks(h, sla, at(2026, 3, 3, 12))
    nu = tc.clock("next_update")
    assert nu is not None and nu.episode == 1 and nu.due == at(2026, 3, 4, 9)
    res = [*h, StatusChanged(at(2026, 3, 3, 15), "resolved")]
    done = ticket_clocks(res, sla, at(2026, 3, 10, 9))
    assert done.resolved and done.clock("resolution").met  # type: ignore[union-attr]
    assert done.clock("next_update").met and done.next_due is None  # type: ignore[union-attr]
    # Reopened a week later: the week resolved does not count; a new episode starts.
    again = [*res, StatusChanged(at(2026, 3, 10, 9), "open")]
    tc = ticket_clocks(again, sla, at(2026, 3, 10, 10))
    r = tc.clock("resolution")
    assert r is not None and r.episode == 1 and r.state == "running"
    assert r.consumed == 9 * H + 7 * H + 1 * H  # Mon 9-18, Tue 8-15, reopened 9:00 +1h
    nu = tc.clock("next_update")
    assert nu is not None and nu.started == at(2026, 3, 10, 9).astimezone(UTC)


def test_referral_accept_clock(sla: SlaConfig) -> None:
    objectives = {"tier2": {2: 2 * H}}
    h = [opened(at(2026, 3, 2, 9)), Referred(at(2026, 3, 2, 17), "tier2")]
    ta = ticket_clocks(h, sla, at(2026, 3, 3, 8, 30), objectives).clock("tier_accept")
    assert ta is not None and ta.due == at(2026, 3, 3, 9) and ta.state == "running"
    assert ticket_clocks(h, sla, at(2026, 3, 3, 8, 30)).clock("tier_accept") is None
    ok = ticket_clocks([*h, Accepted(at(2026, 3, 3, 8, 45), "tier2")], sla,
                       at(2026, 3, 3, 10), objectives)
    assert ok.clock("tier_accept").met and ok.owner == "tier2"  # type: ignore[union-attr]
    # A referral does not pause while the ticket waits on the customer.
    waiting = [*h, StatusChanged(at(2026, 3, 2, 17, 30), "waiting-on-customer")]
    ta = ticket_clocks(waiting, sla, at(2026, 3, 3, 10), objectives).clock("tier_accept")
    assert ta is not None and ta.breached
    second = [*h, Referred(at(2026, 3, 3, 10), "tier2")]
    ta = ticket_clocks(second, sla, at(2026, 3, 3, 10), objectives).clock("tier_accept")
    assert ta is not None and ta.episode == 1 and ta.due == at(2026, 3, 3, 12)


def test_next_due_snooze_and_future_facts(sla: SlaConfig) -> None:
    h = [opened(at(2026, 3, 2, 9)), Snoozed(at(2026, 3, 2, 10), at(2026, 3, 3, 10), "vendor"),
         Responded(at(2026, 3, 9, 9))]  # after now: ignored
    tc = ticket_clocks(h, sla, at(2026, 3, 2, 11))
    assert tc.next_due == at(2026, 3, 2, 13) and tc.snoozed_until == at(2026, 3, 3, 10)
    assert ticket_clocks(h, sla, at(2026, 3, 3, 11)).snoozed_until is None
    with pytest.raises(ValueError, match="starts with Opened"):
        ticket_clocks([Responded(at(2026, 3, 2, 9))], sla, at(2026, 3, 2, 11))


def test_explain_shows_pauses_gaps_and_outcome(sla: SlaConfig) -> None:
    h = [opened(at(2026, 3, 6, 16)), StatusChanged(at(2026, 3, 6, 17), "waiting-on-customer"),
         CustomerWrote(at(2026, 3, 9, 9)), Responded(at(2026, 3, 9, 10))]
    lines = explain(ticket_clocks(h, sla, at(2026, 3, 9, 12)), at(2026, 3, 9, 12))
    text = "\n".join(lines)
    assert "policy p2" in text and "calendar office (Europe/Berlin)" in text
    assert "paused    Fri 2026-03-06 17:00 CET - Mon 2026-03-09 09:00 CET" in text
    assert "due       Mon 2026-03-09 12:00 CET = start + 4h of business time + 2h paused" \
        in text
    assert "met       Mon 2026-03-09 10:00 CET (2h early)" in text
    assert "next update (episode 0)" in text


def test_promise_in_the_acknowledgment_and_list_filters(sla: SlaConfig) -> None:
    from mailflow.slaclock import promised_first_response

    assert promised_first_response(sla, opened(at(2026, 3, 6, 16))) == at(2026, 3, 9, 10)
    assert promised_first_response(sla, opened(at(2026, 3, 6, 16), 1)) == at(2026, 3, 6, 16, 30)
    tc = ticket_clocks([opened(at(2026, 3, 2, 10))], sla, at(2026, 3, 2, 13, 30))
    assert tc.due_within(at(2026, 3, 2, 13, 30), H) and not tc.breached
    assert not tc.due_within(at(2026, 3, 2, 13, 30), 15 * M)
    assert ticket_clocks([opened(at(2026, 3, 2, 10))], sla, at(2026, 3, 2, 15)).breached


def test_resolved_unanswered_stops_every_clock(sla: SlaConfig) -> None:
    h = [opened(at(2026, 3, 2, 10)), StatusChanged(at(2026, 3, 2, 11), "resolved")]
    tc = ticket_clocks(h, sla, at(2026, 3, 9, 10))
    assert tc.next_due is None and all(c.stopped is not None for c in tc.clocks)
    assert tc.clock("first_response").met  # type: ignore[union-attr]


def test_instant_at_skipping_segments_agrees_with_walking_them(sla: SlaConfig) -> None:
    from dataclasses import replace

    h = [opened(at(2026, 3, 2, 9), 3)]
    for day in (2, 3, 4):
        h += [StatusChanged(at(2026, 3, day, 11), "waiting-on-customer"),
              CustomerWrote(at(2026, 3, day, 14))]
    clock = ticket_clocks(h, sla, at(2026, 3, 5, 10)).clock("resolution")
    assert clock is not None and len(clock.segments) == 4
    walked = replace(clock, segment_business=())
    for minutes in range(0, 60 * 60, 17):
        amount = timedelta(minutes=minutes)
        assert instant_at(clock, amount) == instant_at(walked, amount), minutes


def test_group_objectives_in_days_are_working_days(sla: SlaConfig) -> None:
    # groups.yaml "accept: 1d" is 24h as parsed; in the office calendar it means one
    # working day (10h), as "1d" does in sla.yaml. Hours stay hours.
    h = [opened(at(2026, 3, 2, 9)), Referred(at(2026, 3, 2, 9), "tier2")]
    now = at(2026, 3, 2, 10)
    day = ticket_clocks(h, sla, now, {"tier2": {2: 24 * H}}).clock("tier_accept")
    assert day is not None and day.target.text == "1d" and day.due == at(2026, 3, 3, 9)
    week = ticket_clocks(h, sla, now, {"tier2": {2: 7 * 24 * H}}).clock("tier_accept")
    assert week is not None and week.due == at(2026, 3, 9, 9)
    hours = ticket_clocks(h, sla, now, {"tier2": {2: 36 * H}}).clock("tier_accept")
    assert hours is not None and hours.target.business == 36 * H


def test_accept_objectives_from_the_shipped_groups() -> None:
    from mailflow.classify import load_groups
    from mailflow.slaclock import accept_objectives

    objectives = accept_objectives(load_groups(Path(__file__).parents[2] / "rules").groups)
    assert objectives["tier2"][1] == 30 * M and objectives["vendor-acme"][3] == 48 * H
