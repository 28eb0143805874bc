"""Rule conditions, order/conflict semantics, located errors, and a fuzzed loader."""

from __future__ import annotations

import shutil
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.classify import Facts, RulesError, load_rules
from mailflow.classify.reloader import RulesHolder
from mailflow.parse import parse
from tests.mails import mail

SHIPPED = Path(__file__).parents[2] / "rules"
MONDAY_10 = datetime(2026, 1, 5, 10, tzinfo=UTC)
SUNDAY_10 = datetime(2026, 1, 4, 10, tzinfo=UTC)


def _rules(tmp_path: Path, body: str, groups: str | None = None,
           lists: dict[str, str] | None = None) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "classify.yaml").write_text(textwrap.dedent(body))
    if groups:
        (d / "groups.yaml").write_text(textwrap.dedent(groups))
    for name, text in (lists or {}).items():
        (d / "lists").mkdir(exist_ok=True)
        (d / "lists" / f"{name}.yaml").write_text(text)
    return d


def _facts(when: datetime = MONDAY_10, **kw: object) -> Facts:
    return Facts.of(parse(mail(**kw)), when)  # type: ignore[arg-type]


def test_shipped_examples_load_and_classify() -> None:
    rs = load_rules(SHIPPED)
    out = rs.evaluate(_facts(subject="Website down", body="all users are affected"))
    assert out.severity == 1 and set(out.tags) >= {"outage", "widespread"}
    billing = rs.evaluate(_facts(subject="Invoice 17 is wrong"))
    assert billing.category == "administrative" and billing.owner_group == "management"
    vip = rs.evaluate(_facts(sender="ceo@bigcorp.example", subject="question"))
    assert vip.severity == 2 and "vip" in vip.tags
    plain = rs.evaluate(_facts(subject="How do I change my password?", body="thanks"))
    assert (plain.severity, plain.category, plain.owner_group, plain.matched) == \
        (3, "technical", "frontline", ())


def test_severity_takes_most_severe_others_first_match_and_stop(tmp_path: Path) -> None:
    d = _rules(tmp_path, """
        rules:
          - name: a
            when: {subject: printer}
            set: {severity: 2, owner: tier2, tags: [a]}
          - name: b
            when: {subject: printer}
            set: {severity: 1, owner: management, category: administrative, tags: [b]}
          - name: c
            when: {subject: printer}
            set: {severity: 3, tags: [c]}
            stop: true
          - name: d
            when: {subject: printer}
            set: {tags: [d]}
        """, groups="groups: {tier2: {}, management: {}}\n")
    out = load_rules(d).evaluate(_facts(subject="printer jam"))
    assert out.severity == 1 and out.owner_group == "tier2"
    assert out.category == "administrative" and out.tags == ("a", "b", "c")
    assert out.matched == ("a", "b", "c") and len(out.trace) == 3


@pytest.mark.parametrize(("cond", "kw", "when", "expect"), [
    ("{subject: {words: [down]}}", {"subject": "server down"}, MONDAY_10, True),
    ("{subject: {words: [down]}}", {"subject": "download"}, MONDAY_10, False),
    ("{body: {regex: 'err(or)? \\d+'}}", {"body": "got ERROR 42"}, MONDAY_10, True),
    ("{body: {contains: 'disk full'}}", {"body": "the DISK FULL alarm"}, MONDAY_10, True),
    ("{sender: {domain: bigcorp.example}}", {"sender": "a@eu.bigcorp.example"}, MONDAY_10,
     True),
    ("{sender: {domain: bigcorp.example}}", {"sender": "a@notbigcorp.example"}, MONDAY_10,
     False),
    ("{sender: {domain: bigcorp.example}}", {"sender": "a@bigcorp.example.evil"}, MONDAY_10,
     False),
    ("{sender: '*@shop.test'}", {"sender": "carol@shop.test.evil"}, MONDAY_10, False),
    ("{sender: {list: vip}}", {"sender": "boss@vip.example"}, MONDAY_10, True),
    ("{sender: {list: vip}}", {"sender": "x@other.example"}, MONDAY_10, False),
    ("{sender: '*@shop.test'}", {"sender": "carol@shop.test"}, MONDAY_10, True),
    ("{to: billing@example.test}", {"to": "billing+x@example.test"}, MONDAY_10, True),
    ("{header: {name: X-Priority, regex: '^1'}}", {"headers": {"X-Priority": "1 (Highest)"}},
     MONDAY_10, True),
    ("{header: {name: X-Priority, present: false}}", {}, MONDAY_10, True),
    ("{business_hours: true}", {}, MONDAY_10, True),
    ("{business_hours: true}", {}, SUNDAY_10, False),
    ("{not: {subject: hello}}", {"subject": "hello"}, MONDAY_10, False),
    ("{any: [{subject: x}, {body: printer}]}", {"body": "the printer"}, MONDAY_10, True),
    ("{all: [{subject: printer}, {body: nothing}]}", {"subject": "printer"}, MONDAY_10, False),
    ("{attachment: true}", {}, MONDAY_10, False),
])
def test_conditions(tmp_path: Path, cond: str, kw: dict, when: datetime, expect: bool) -> None:
    d = _rules(tmp_path, f"rules:\n  - name: r\n    when: {cond}\n    set: {{tags: [hit]}}\n",
               lists={"vip": "- '@vip.example'\n"})
    out = load_rules(d).evaluate(_facts(when, **kw))
    assert (out.matched == ("r",)) is expect, out.trace


def test_every_problem_located_at_once(tmp_path: Path) -> None:
    d = _rules(tmp_path, """\
        defaults:
          severity: 5
        rules:
          - name: one
            when: {subject: {regex: "(unclosed"}}
            set: {severity: 1}
          - name: two
            when: {sender: {list: nosuch}}
            set: {owner: nobody, colour: red}
          - name: three
            when: {subjekt: hello}
            set: {severity: "high"}
          - name: one
            set: {category: sales}
        """)
    with pytest.raises(RulesError) as e:
        load_rules(d, display="rules")
    text = "\n".join(map(str, e.value.problems))
    assert "rules/classify.yaml:2: defaults: severity must be 1, 2 or 3 (got 5)" in text
    assert "rules/classify.yaml:5: subject: invalid regular expression" in text
    assert "rules/classify.yaml:8: sender: unknown list 'nosuch'" in text
    assert "rules/classify.yaml:9: rule two: unknown tier group 'nobody'" in text
    assert "cannot set 'colour'" in text
    assert "rules/classify.yaml:11: unknown condition 'subjekt'" in text
    assert "severity must be 1, 2 or 3 (got \"high\")" in text
    assert "category must be technical or administrative" in text


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    d = _rules(tmp_path, "rules:\n  - name: a\n    when: {subject: [unclosed\n")
    with pytest.raises(RulesError) as e:
        load_rules(d, display="rules")
    assert str(e.value.problems[0]).startswith("rules/classify.yaml:")


def test_reloader_keeps_last_good_rules(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    shutil.copytree(SHIPPED, d)
    holder = RulesHolder(d)
    good = holder.current.version
    (d / "classify.yaml").write_text("rules: [ {name: x, set: {severity: 9}} ]\n")
    assert holder.refresh() is False and holder.current.version == good
    assert holder.last_errors and "severity must be 1, 2 or 3" in holder.last_errors[0]
    (d / "classify.yaml").write_text("rules: [ {name: x, set: {severity: 1}} ]\n")
    assert holder.refresh() is True and holder.current.version != good
    assert holder.current.evaluate(_facts()).severity == 1


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8)
    | st.sampled_from(["subject", "when", "set", "severity", "rules", "regex", "(", "list",
                       "any", "all", "not", "owner", "tier2", "sender", "header", "name"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["name", "when", "set", "rules", "subject", "body",
                                      "any", "all", "not", "severity", "owner", "tags",
                                      "regex", "words", "stop", "defaults", "sender",
                                      "header", "attachment", "business_hours", "list"]),
                      children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=yaml_values)
def test_no_rule_file_crashes_the_loader(tmp_path: Path, doc: object) -> None:
    d = tmp_path / "fuzz"
    d.mkdir(exist_ok=True)
    (d / "classify.yaml").write_text(yaml.safe_dump(doc))
    try:
        rs = load_rules(d, display="rules")
    except RulesError as exc:
        assert exc.problems
        assert all(str(p).startswith("rules/") and p.line >= 0 for p in exc.problems)
    else:
        rs.evaluate(_facts())


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_loader(tmp_path: Path, text: str) -> None:
    d = tmp_path / "fuzz2"
    d.mkdir(exist_ok=True)
    (d / "classify.yaml").write_text(text)
    try:
        load_rules(d)
    except RulesError as exc:
        assert exc.problems


def test_regex_with_uppercase_escapes_keeps_its_meaning(tmp_path: Path) -> None:
    d = _rules(tmp_path, r"""
        rules:
          - name: digits
            when: {subject: {regex: 'ERR\d+'}}
            set: {tags: [d]}
          - name: nondigits
            when: {subject: {regex: 'code\D'}}
            set: {tags: [nd]}
        """)
    out = load_rules(d).evaluate(_facts(subject="err42 Code!"))
    assert out.matched == ("digits", "nondigits")
    assert load_rules(d).evaluate(_facts(subject="code7")).matched == ()


def test_an_impossible_date_is_a_located_problem_not_a_crash() -> None:
    from mailflow.classify.yamlsource import YamlProblem, load_located

    with pytest.raises(YamlProblem) as e:
        load_located("a: 1\nholidays: [2026-12-24, 2026-13-01]\n")
    assert e.value.line == 2 and "not a valid date: 2026-13-01" in e.value.what
