"""rules replay's fold: the same as ingest's, so unchanged rules change nothing."""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailflow.classify import Classification, RuleSet, load_rules
from mailflow.classify.replay import (
    Change,
    StoredMail,
    fold,
    hits_per_rule,
    replay_ticket,
)
from tests.mails import mail

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

BASE = """\
defaults: {severity: 3, category: technical, owner: frontline}
rules:
  - name: outage
    when: {body: {words: [down]}}
    set: {severity: 1, tags: [outage]}
  - name: billing
    when: {subject: {words: [invoice]}}
    set: {category: administrative, severity: 2}
"""


def _rules(tmp_path: Path, name: str, body: str) -> RuleSet:
    d = tmp_path / name
    d.mkdir()
    (d / "classify.yaml").write_text(textwrap.dedent(body))
    return load_rules(d)


def _cls(severity: int, category: str = "technical", owner: str = "frontline",
         matched: tuple[str, ...] = ()) -> Classification:
    return Classification(severity, category, owner, (), matched, (), "v")


def test_fold_first_classifies_and_follow_ups_only_raise_severity() -> None:
    v = fold([_cls(3, "administrative", "management", ("billing",)),
              _cls(1, "technical", "tier2", ("outage",)), _cls(2)])
    assert v is not None
    assert (v.severity, v.category, v.owner_group) == (1, "administrative", "management")
    assert v.matched == {"billing", "outage"}


def test_fold_never_lowers_and_is_none_without_messages() -> None:
    v = fold([_cls(1), _cls(3)])
    assert v is not None and v.severity == 1
    assert fold([]) is None


def test_ticket_raised_by_a_follow_up_is_unchanged_under_the_same_rules(
        tmp_path: Path) -> None:
    rs = _rules(tmp_path, "a", BASE)
    same = _rules(tmp_path, "b", BASE)  # an identical copy: evaluated, not short-cut
    mails = [StoredMail(mail(subject="Printer", body="it jams"), AT),
             StoredMail(mail(subject="Re: Printer", body="now everything is down"), AT)]
    r = replay_ticket(7, mails, rs, same, UTC)
    assert r is not None
    assert r.current.severity == 1 and r.messages == 2
    assert r.changes == ()


def test_edited_rule_changes_the_folded_result(tmp_path: Path) -> None:
    rs = _rules(tmp_path, "a", BASE)
    edited = _rules(tmp_path, "b", BASE + "  - name: printers\n"
                    "    when: {subject: {words: [printer]}}\n"
                    "    set: {category: administrative}\n")
    mails = [StoredMail(mail(subject="Printer", body="it jams"), AT),
             StoredMail(mail(subject="Re: Printer", body="now everything is down"), AT)]
    r = replay_ticket(7, mails, rs, edited, UTC)
    assert r is not None
    assert r.changes == (Change("category", "technical", "administrative"),)
    assert hits_per_rule([r], edited) == {"outage": 1, "billing": 0, "printers": 1}


def test_unparseable_messages_are_skipped_for_both_rule_sets(tmp_path: Path) -> None:
    rs = _rules(tmp_path, "a", BASE)
    assert replay_ticket(1, [StoredMail(b"   ", AT)], rs, rs, UTC) is None
    r = replay_ticket(1, [StoredMail(b"", AT), StoredMail(mail(subject="invoice"), AT)],
                      rs, rs, UTC)
    assert r is not None and r.messages == 1 and r.current.category == "administrative"


def test_progress_line_every_n_tickets_only_on_a_terminal(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mailflow.cli.rules import _Progress

    quiet = _Progress(every=2)  # pytest's stderr is no terminal
    for _ in range(5):
        quiet.step()
    quiet.done()
    assert capsys.readouterr().err == ""

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown = _Progress(every=2)
    shown.total = 5
    for _ in range(5):
        shown.step()
    shown.done()
    assert capsys.readouterr().err.splitlines() == [
        "replayed 2 of 5 tickets...", "replayed 4 of 5 tickets...", "replayed 5 of 5 tickets"]
