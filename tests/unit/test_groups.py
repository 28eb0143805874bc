"""groups.yaml: members, fallbacks, objectives, external_ref; every problem located."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.classify import RulesError, load_groups, load_rules

SHIPPED = Path(__file__).parents[2] / "rules"

GOOD = """\
frontline:
  leader: Lead@Example.test
  members: [ann@example.test]
groups:
  tier2:
    address: tier2@example.test
    description: Second line
    leader: tina@example.test
    members: [tom@example.test]
    fallback: frontline
    objectives:
      1: {accept: 30m, update: 2h, resolve: 1d}
      2: {accept: 2h, update: 8h, resolve: 3d}
      3: {accept: 1d, update: 2d, resolve: 2w}
  vendor:
    address: support@acme.example
    fallback: tier2
    external_ref: 'CASE-\\d{6}'
"""


def _dir(tmp_path: Path, groups: str, rules: str = "rules: []\n") -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "groups.yaml").write_text(textwrap.dedent(groups))
    (d / "classify.yaml").write_text(textwrap.dedent(rules))
    return d


def _problems(d: Path) -> list[str]:
    with pytest.raises(RulesError) as e:
        load_rules(d, display="rules")
    return [str(p) for p in e.value.problems]


def test_shipped_groups_load_with_members_objectives_and_external_ref() -> None:
    tiers = load_rules(SHIPPED).tiers
    assert {"frontline", "tier2", "vendor-acme", "management"} <= tiers.names
    acme = tiers.groups["vendor-acme"]
    assert acme.case_number("Re: your CASE-123456 [SUP-4]") == "CASE-123456"
    assert tiers.frontline.members and tiers.frontline.leader in tiers.frontline.members
    for name in ("tier2", "vendor-acme", "management"):
        g = tiers.groups[name]
        assert g.leader in g.members and set(g.objectives) == {1, 2, 3}, name


def test_good_file_loads_and_answers_questions(tmp_path: Path) -> None:
    tiers = load_groups(_dir(tmp_path, GOOD))
    tier2 = tiers.groups["tier2"]
    assert tier2.may_act("TOM@example.test ") and tier2.may_act("tina@example.test")
    assert not tier2.may_act("ann@example.test")
    assert tiers.frontline.may_act("lead@example.test")  # the leader always may act
    assert tiers.groups_of("tom@example.test") == ("tier2",)
    o = tier2.objectives_for(1)
    assert o is not None and (o.accept, o.update, o.resolve) == (
        timedelta(minutes=30), timedelta(hours=2), timedelta(days=1))
    assert tier2.objectives_for(4) is None
    assert tiers.fallback_chain("vendor") == ("tier2", "frontline")
    vendor = tiers.groups["vendor"]
    assert vendor.case_number("case-123456 again") == "case-123456"
    assert vendor.case_number("CASE-1234567") is None  # not inside a longer number
    assert vendor.case_number("XCASE-123456") is None
    assert vendor.from_group_domain("noreply@mail.acme.example")
    assert not vendor.from_group_domain("x@notacme.example")


def test_bare_groups_still_work_as_owner_names(tmp_path: Path) -> None:
    tiers = load_groups(_dir(tmp_path, "groups: {tier2: {}, management: {}}\n"))
    assert tiers.names == {"frontline", "tier2", "management"}
    assert tiers.groups["tier2"].members == frozenset()


def test_every_problem_located_at_once(tmp_path: Path) -> None:
    d = _dir(tmp_path, """\
        frontline:
          leader: not-an-address
          colour: blue
        groups:
          tier2:
            address: tier2@example.test
            members: [tom@example.test, tom@example.test, 17]
            fallback: tier9
            objectives:
              1: {accept: 30m, update: soon, resolve: 1d}
              2: {accept: 4d, update: 8h, resolve: 3d}
              5: {accept: 1h, update: 1h, resolve: 1h}
          vendor:
            address: support@acme.example
            external_ref: 'CASE-(\\d{6}'
            shoe: 42
          lazy:
            address: lazy@example.test
            external_ref: '\\d{6}'
          greedy:
            address: g@example.test
            external_ref: '^CASE-\\d+'
          empty:
            address: e@example.test
            external_ref: '(CASE-\\d+)?'
          frontline: {}
          Bad Name: {}
        """, """\
        rules:
          - name: r
            set: {owner: tier3}
        """)
    got = "\n".join(_problems(d))
    expect = [
        "rules/groups.yaml:2: frontline: leader must be an email address (got 'not-an-address')",
        "rules/groups.yaml:3: frontline: unknown key 'colour'",
        "rules/groups.yaml:7: group tier2: members: tom@example.test is listed twice",
        "rules/groups.yaml:7: group tier2: members: entry must be an email address (got 17)",
        "rules/groups.yaml:8: group tier2: unknown fallback group 'tier9'",
        "rules/groups.yaml:10: group tier2: objectives 1: update must be a duration",
        "rules/groups.yaml:11: group tier2: objectives 2: accept is longer than resolve",
        "rules/groups.yaml:12: group tier2: objectives: severity must be 1, 2 or 3 (got '5')",
        "rules/groups.yaml:9: group tier2: objectives: missing severity 3",
        "rules/groups.yaml:15: group vendor: external_ref: invalid regular expression",
        "rules/groups.yaml:16: group vendor: unknown key 'shoe'",
        "rules/groups.yaml:19: group lazy: external_ref '\\d{6}' matches a bare number",
        "rules/groups.yaml:22: group greedy: external_ref is searched for in subjects",
        "rules/groups.yaml:25: group empty: external_ref '(CASE-\\d+)?' matches an empty text",
        "rules/groups.yaml:26: frontline is the help desk itself",
        "rules/groups.yaml:27: group name 'Bad Name' must be lower-case",
        "rules/classify.yaml:3: rule r: unknown tier group 'tier3'",
    ]
    for e in expect:
        assert e in got, e


def test_fallback_cycles_and_self_fallback_are_reported_once(tmp_path: Path) -> None:
    d = _dir(tmp_path, """\
        groups:
          a: {address: a@x.test, fallback: b}
          b: {address: b@x.test, fallback: c}
          c: {address: c@x.test, fallback: a}
          d: {address: d@x.test, fallback: d}
          e: {address: e@x.test, fallback: a}
        """)
    got = _problems(d)
    assert got == [
        "rules/groups.yaml:2: group a: fallback cycle a -> b -> c -> a (a referral nobody "
        "accepts would go round)",
        "rules/groups.yaml:5: group d: falls back to itself",
    ]


def test_group_with_members_needs_an_address(tmp_path: Path) -> None:
    got = _problems(_dir(tmp_path, "groups:\n  t: {leader: t@x.test}\n"))
    assert got == ["rules/groups.yaml:2: group t: needs an `address` to receive its referrals"]


@pytest.mark.parametrize("text", [
    "", "groups:\n", "- a\n", "groups: [a]\n", "groups: {x: 1}\n", "frontline: 3\ngroups: {}\n",
    "groups:\n  t:\n    objectives: 3\n", "groups:\n  t: {address: t@x.test, external_ref: 3}\n",
])
def test_odd_files_never_crash(tmp_path: Path, text: str) -> None:
    d = _dir(tmp_path, text)
    try:
        load_groups(d, display="rules")
    except RulesError as exc:
        assert all(str(p).startswith("rules/groups.yaml:") for p in exc.problems)


def test_case_reference_only_from_the_groups_domain() -> None:
    tiers = load_rules(SHIPPED).tiers
    assert tiers.case_reference("noreply@acme.example", "RE: CASE-000123 update",
                                "body") == ("vendor-acme", "CASE-000123")
    assert tiers.case_reference("noreply@acme.example", "update", "see case-000124") == (
        "vendor-acme", "case-000124")
    assert tiers.case_reference("eve@evil.example", "CASE-000123") is None
    assert tiers.case_reference("noreply@acme.example", "no number here") is None


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5) | st.text(max_size=6)
    | st.sampled_from(["a@x.test", "tier2", "frontline", "CASE-\\d+", "(", "4h", "1"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.sampled_from(["groups", "frontline", "tier2", "x", "address", "leader", "members",
                         "fallback", "objectives", "external_ref", "1", "2", "3", "accept",
                         "update", "resolve", "description"]), kids, max_size=4),
    max_leaves=20))
def test_no_groups_file_crashes_the_loader(tmp_path: Path, doc: object) -> None:
    d = tmp_path / "fuzz"
    d.mkdir(exist_ok=True)
    (d / "groups.yaml").write_text(yaml.safe_dump(doc))
    try:
        load_groups(d, display="rules")
    except RulesError as exc:
        assert all(str(p).startswith("rules/groups.yaml:") for p in exc.problems)
