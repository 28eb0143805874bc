"""sla.yaml: the shipped file loads, the first fitting policy applies, durations are
business time of the policy's calendar, and every problem is reported at once, located."""

from __future__ import annotations

import shutil
import textwrap
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailflow.classify import RulesError
from mailflow.sla_policy import load_sla, parse_target

SHIPPED = Path(__file__).parents[2] / "rules"
H = timedelta(hours=1)


def _dir(tmp_path: Path, sla: str, groups: str | None = None,
         lists: dict[str, str] | None = None) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "sla.yaml").write_text(textwrap.dedent(sla))
    if groups:
        (d / "groups.yaml").write_text(textwrap.dedent(groups))
    for name, text in (lists or {}).items():
        (d / "lists").mkdir(exist_ok=True)
        (d / "lists" / f"{name}.yaml").write_text(text)
    return d


def _problems(d: Path) -> list[str]:
    with pytest.raises(RulesError) as err:
        load_sla(d, display="rules")
    return [str(p) for p in err.value.problems]


BASIC = """\
    calendars:
      office:
        hours: {mon-fri: "08:00-18:00"}
    policies:
      - {name: p1, severity: 1, calendar: 24x7, first_response: 30m}
      - {name: p2, severity: [2, 3], calendar: office, first_response: 1d, resolution: 1w}
    """


def test_shipped_sla_file_loads_and_picks_policies() -> None:
    sla = load_sla(SHIPPED)
    assert sla.policy_for(1, "technical", "frontline", "a@x.test").name == "critical"
    assert sla.policy_for(2, "technical", "frontline", "ceo@bigcorp.example").name == "vip-high"
    assert sla.policy_for(2, "technical", "frontline", "a@sub.vip.example").name == "vip-high"
    assert sla.policy_for(2, "technical", "tier2", "a@x.test").name == "high"
    normal = sla.policy_for(3, "administrative", "management", "a@x.test")
    assert normal.name == "normal" and normal.calendar.name == "office"
    assert normal.first_response is not None and normal.first_response.business == 10 * H
    assert normal.calendar.holiday_name(date(2026, 12, 24)) == "holiday"
    assert normal.calendar.holiday_name(date(2026, 12, 25)) == "Christmas Day"
    critical = sla.policy_for(1, "technical", "frontline", "a@x.test")
    assert critical.calendar.always_open and critical.first_response.business == 30 * H / 60  # type: ignore[union-attr]
    assert critical.source.endswith("sla.yaml:20")


def test_durations_are_business_time_of_the_calendar(tmp_path: Path) -> None:
    sla = load_sla(_dir(tmp_path, BASIC))
    p2 = sla.policy_for(3, "technical", "frontline", "a@x.test")
    assert p2.first_response.business == 10 * H   # type: ignore[union-attr]  # one working day
    assert p2.resolution.business == 50 * H       # type: ignore[union-attr]  # a working week
    assert parse_target("1d", sla.calendars["24x7"]).business == 24 * H
    assert parse_target("1h30m", sla.calendars["24x7"]).business == 90 * H / 60
    assert parse_target(90, sla.calendars["24x7"]).business == timedelta(seconds=90)
    for bad in ("soon", "0m", "-1h", True):
        with pytest.raises(ValueError):
            parse_target(bad, sla.calendars["24x7"])


def test_calendar_without_zone_takes_the_configured_one(tmp_path: Path) -> None:
    sla = load_sla(_dir(tmp_path, BASIC), tz=ZoneInfo("America/New_York"))
    assert sla.calendars["office"].tz == ZoneInfo("America/New_York")


def test_narrowing_by_category_owner_and_customers(tmp_path: Path) -> None:
    d = _dir(tmp_path, """\
        policies:
          - {name: vip, severity: 2, customers: vip, calendar: 24x7, first_response: 1h}
          - {name: admin, severity: [2, 3], category: administrative, calendar: 24x7,
             first_response: 8h}
          - {name: vendor, severity: 2, owner: [tier2], calendar: 24x7, first_response: 2h}
          - {name: all, severity: [1, 2, 3], calendar: 24x7, first_response: 4h}
        """, groups="groups: {tier2: {}}\n", lists={"vip": "- '@vip.example'\n"})
    sla = load_sla(d)
    assert sla.policy_for(2, "technical", "frontline", "Boss@VIP.example").name == "vip"
    assert sla.policy_for(3, "administrative", "tier2", "a@x.test").name == "admin"
    assert sla.policy_for(2, "technical", "tier2", "a@x.test").name == "vendor"
    assert sla.policy_for(1, "technical", "tier2", "a@x.test").name == "all"


def test_every_problem_located_at_once(tmp_path: Path) -> None:
    d = _dir(tmp_path, """\
        calendars:
          office:
            timezone: Mars/Olympus
            hours:
              mon-fri: "08:00-18:00"
              fri: "09:00"
              funday: "10:00-11:00"
            holidays: {country: XX, dates: ["2026-13-01"]}
          24x7: {24x7: true}
        policies:
          - name: one
            severity: 4
            calendar: office
            first_response: soon
          - name: two
            severity: 2
            owner: tier9
            customers: nosuch
            calendar: nowhere
            first_response: 4h
            colour: blue
          - name: three
            severity: 3
          - {name: broad, severity: 1, calendar: 24x7, first_response: 1h}
          - {name: narrow, severity: 1, category: technical, calendar: 24x7,
             first_response: 1h}
        """, groups="groups: {tier2: {}}\n")
    problems = _problems(d)
    expected = [
        "rules/sla.yaml:3: calendar office: unknown time zone 'Mars/Olympus'",
        "rules/sla.yaml:6: calendar office: fri is given twice (mon-fri and fri)",
        "rules/sla.yaml:6: calendar office: business hours must look like 08:00-18:00",
        "rules/sla.yaml:7: calendar office: unknown day 'funday'",
        "rules/sla.yaml:8: calendar office: holidays: Country XX not available",
        "rules/sla.yaml:8: calendar office: holiday '2026-13-01' is not a date",
        "rules/sla.yaml:9: calendar 24x7 is built in",
        "rules/sla.yaml:12: policy one: severity must be 1, 2, 3",
        "rules/sla.yaml:17: policy two: unknown tier group 'tier9' (known: frontline, tier2)",
        "rules/sla.yaml:18: policy two: unknown list 'nosuch'",
        "rules/sla.yaml:19: policy two: calendar must be one of 24x7",
        "rules/sla.yaml:21: policy two: unknown key 'colour'",
        "rules/sla.yaml:22: policy three: calendar must be one of",
        "rules/sla.yaml:22: policy three: needs at least one of first_response",
        "rules/sla.yaml:25: policy narrow can never apply: policy broad above it",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    # The bad calendar is reported once, not again by the policy that names it.
    assert not any("policy one: calendar" in p for p in problems)
    assert len(problems) == len(expected), problems


def test_a_severity_without_a_catch_all_policy_is_refused(tmp_path: Path) -> None:
    d = _dir(tmp_path, """\
        policies:
          - {name: p1, severity: 1, calendar: 24x7, first_response: 30m}
          - {name: p2, severity: 2, category: technical, calendar: 24x7, first_response: 1h}
        """)
    problems = _problems(d)
    assert any(p.startswith("rules/sla.yaml:2: no policy for every severity 2 ticket")
               for p in problems), problems
    assert any("severity 3" in p for p in problems)


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    d = _dir(tmp_path, "policies:\n  - {name: x\n")
    [problem] = _problems(d)
    assert problem.startswith("rules/sla.yaml:") and "invalid YAML" in problem
    (d / "sla.yaml").write_text("calendars:\n  o: {holidays: [2026-13-01]}\n")
    [problem] = _problems(d)
    # Located at its line (the loader used to lose it: line 1).
    assert problem == ("rules/sla.yaml:2: invalid YAML: not a valid date: 2026-13-01 "
                       "(month must be in 1..12)")
    (d / "sla.yaml").unlink()
    assert _problems(d) == ["rules/sla.yaml:0: file not found (see docs/sla.md)"]


def test_shipped_rules_directory_still_loads_as_rules(tmp_path: Path) -> None:
    # sla.yaml and escalation.yaml live beside the rule files but are not rule files.
    from mailflow.classify import load_rules

    d = tmp_path / "rules"
    shutil.copytree(SHIPPED, d)
    load_rules(d)


def test_calendar_forms(tmp_path: Path) -> None:
    from datetime import datetime

    from mailflow.businesshours import is_open

    d = _dir(tmp_path, """\
        calendars:
          shop:
            timezone: Europe/Berlin
            hours:
              mon-fri: ["08:00-12:00", "13:00-17:00"]
              sat,sun: closed
            holidays: [2026-12-24, "2026-12-31"]
          nights: {hours: {fri-mon: "22:00-06:00"}}
          utc-always: {timezone: UTC, 24x7: true}
        policies:
          - {name: all, severity: [1, 2, 3], calendar: shop, first_response: 1d}
        """)
    sla = load_sla(d, tz=ZoneInfo("Europe/Berlin"))
    shop = sla.calendars["shop"]
    berlin = ZoneInfo("Europe/Berlin")
    assert is_open(shop, datetime(2026, 3, 2, 9, tzinfo=berlin))
    assert not is_open(shop, datetime(2026, 3, 2, 12, 30, tzinfo=berlin))
    assert not is_open(shop, datetime(2026, 12, 31, 9, tzinfo=berlin))
    assert shop.business_day == 8 * H and sla.policies[0].first_response.business == 8 * H  # type: ignore[union-attr]
    nights = sla.calendars["nights"]
    assert [bool(day) for day in nights.weekly] == [True, False, False, False, True, True, True]
    assert sla.calendars["utc-always"].always_open
