"""Mail commands: each command, each malformed one, the all-or-nothing rule, transcripts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow.commands import (
    Accept,
    Cause,
    Escalate,
    Eta,
    Internal,
    NextUpdate,
    Prevention,
    Rating,
    Refer,
    SetSeverity,
    SetStatus,
    Snooze,
    Status,
    parse_rating,
    parse_reply,
    transcript,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")
GROUPS = frozenset({"frontline", "tier2", "vendor-acme", "management"})


def _one(line: str):  # type: ignore[no-untyped-def]
    r = parse_reply(f"{line}\n\nSome text.", NOW, BERLIN, GROUPS)
    assert not r.errors, r.errors
    assert len(r.commands) == 1
    return r.commands[0]


def _error(line: str) -> str:
    r = parse_reply(f"#accept\n{line}\n\nSome text.", NOW, BERLIN, GROUPS)
    assert r.rejected and r.to_apply == () and r.relay_text == ""
    assert len(r.errors) == 1 and r.errors[0].line == 2 and r.errors[0].written == line
    return r.errors[0].reason


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=BERLIN)


@pytest.mark.parametrize(("line", "expected"), [
    ("#accept", Accept(1, "#accept")),
    ("#ACCEPT", Accept(1, "#ACCEPT")),
    ("#internal", Internal(1, "#internal")),
    ("#eta 4h", Eta(1, "#eta 4h", _at(25, 14))),
    ("#eta 1h30m", Eta(1, "#eta 1h30m", _at(25, 11, 30))),
    ("#eta 2 days", Eta(1, "#eta 2 days", _at(27, 10))),
    ("#eta 1d 4h", Eta(1, "#eta 1d 4h", _at(26, 14))),
    ("#eta tomorrow 9:30", Eta(1, "#eta tomorrow 9:30", _at(26, 9, 30))),
    ("#eta tomorrow", Eta(1, "#eta tomorrow", _at(26, 10))),
    ("#eta 15:00", Eta(1, "#eta 15:00", _at(25, 15))),
    ("#eta 2026-12-01 15:00", Eta(1, "#eta 2026-12-01 15:00",
                                  datetime(2026, 12, 1, 15, tzinfo=BERLIN))),
    ("#eta 2026-12-01T15:00", Eta(1, "#eta 2026-12-01T15:00",
                                  datetime(2026, 12, 1, 15, tzinfo=BERLIN))),
    ("#eta in 4h", Eta(1, "#eta in 4h", _at(25, 14))),
    ("#eta friday 12:00", Eta(1, "#eta friday 12:00", _at(27, 12))),
    ("#eta Wed 11:00", Eta(1, "#eta Wed 11:00", _at(25, 11))),
    ("#eta wednesday 09:00", Eta(1, "#eta wednesday 09:00", datetime(2026, 12, 2, 9,
                                                                     tzinfo=BERLIN))),
    ("#next-update 2h", NextUpdate(1, "#next-update 2h", _at(25, 12))),
    ("#next_update 30m", NextUpdate(1, "#next_update 30m", _at(25, 10, 30))),
    ("#Next-Update: 30m", NextUpdate(1, "#Next-Update: 30m", _at(25, 10, 30))),
    ("#status in-progress", SetStatus(1, "#status in-progress", Status.IN_PROGRESS)),
    ("#status Waiting on customer",
     SetStatus(1, "#status Waiting on customer", Status.WAITING_ON_CUSTOMER)),
    ("#status resolved", SetStatus(1, "#status resolved", Status.RESOLVED)),
    ("#refer vendor-acme firmware bug, their case",
     Refer(1, "#refer vendor-acme firmware bug, their case", "vendor-acme",
           "firmware bug, their case")),
    ("#refer\ttier2\tlogs", Refer(1, "#refer\ttier2\tlogs", "tier2", "logs")),
    ("#refer Tier2 needs logs analysed", Refer(1, "#refer Tier2 needs logs analysed", "tier2",
                                               "needs logs analysed")),
    ("#severity 1 whole site down", SetSeverity(1, "#severity 1 whole site down", 1,
                                                "whole site down")),
    ("#cause expired certificate", Cause(1, "#cause expired certificate",
                                         "expired certificate")),
    ("#prevention monitor expiry", Prevention(1, "#prevention monitor expiry",
                                              "monitor expiry")),
    ("#escalate management customer threatens to cancel",
     Escalate(1, "#escalate management customer threatens to cancel", "management",
              "customer threatens to cancel")),
    ("#escalate no answer for 3 days", Escalate(1, "#escalate no answer for 3 days", None,
                                               "no answer for 3 days")),
    ("#snooze 1d waiting for the part", Snooze(1, "#snooze 1d waiting for the part",
                                               _at(26, 10), "waiting for the part")),
    ("#snooze tomorrow 08:00 customer on leave",
     Snooze(1, "#snooze tomorrow 08:00 customer on leave", _at(26, 8), "customer on leave")),
])
def test_each_command(line: str, expected: object) -> None:
    assert _one(line) == expected


@pytest.mark.parametrize(("line", "why"), [
    ("#frobnicate", "unknown command #frobnicate"),
    ("#acept", "did you mean #accept?"),
    ("#accept right away", "#accept takes nothing after it"),
    ("#accept.", "#accept takes nothing after it"),
    ("#hashtag-of-the-day", "unknown command #hashtag-of-the-day"),
    ("#internal please", "#internal takes nothing after it"),
    ("#eta", "#eta needs a time"),
    ("#eta yesterday", "'yesterday' is in the past (it is now Wed 2026-11-25 10:00 "
                       "(Europe/Berlin))"),
    ("#eta yesterday 15:00", "is in the past"),
    ("#eta 2026-11-01 12:00", "is in the past"),
    ("#eta 08:00", "is in the past"),
    ("#eta 0h", "must be longer than zero"),
    ("#eta -2h", "is not a time"),
    ("#eta 4x", "is not a time"),
    ("#eta 4 parsecs", "is not a time"),
    ("#eta 2h soon-ish", "unexpected 'soon-ish' after the time"),
    ("#eta 2026-12-01", "needs a time too"),
    ("#eta 2026-13-01 10:00", "is not a date"),
    ("#eta 2026-12-01 25:00", "is not a time of day"),
    ("#eta 2062-12-01 10:00", "more than a year ahead"),
    ("#eta 900d", "more than a year ahead"),
    ("#eta today", "'today' needs a time"),
    ("#eta friday", "'friday' needs a time: friday 15:00"),
    ("#eta friday 26:00", "is not a time of day"),
    ("#next-update", "#next-update needs a time"),
    ("#next-update yesterday", "is in the past"),
    ("#status", "#status needs one of in-progress, waiting-on-customer, resolved"),
    ("#status done", "#status takes one of in-progress, waiting-on-customer, resolved"),
    ("#refer", "#refer needs a group and a reason"),
    ("#refer tier9 because", "unknown group 'tier9' (known: frontline, management, tier2, "
                             "vendor-acme)"),
    ("#refer tier2", "#refer GROUP needs a reason"),
    ("#severity", "#severity needs 1, 2 or 3"),
    ("#severity 4 very bad", "#severity takes 1, 2 or 3 and a reason (got '4')"),
    ("#severity high it is bad", "got 'high'"),
    ("#severity 1", "#severity N needs a reason"),
    ("#cause", "#cause needs a text"),
    ("#prevention", "#prevention needs a text"),
    ("#escalate", "#escalate needs a reason"),
    ("#escalate tier2", "#escalate GROUP needs a reason"),
    ("#snooze", "#snooze needs a time and a reason"),
    ("#snooze 1d", "#snooze TIME needs a reason"),
    ("#snooze later please", "is not a time"),
    ("#snooze yesterday why not", "is in the past"),
])
def test_each_malformed_command(line: str, why: str) -> None:
    assert why in _error(line)


def test_twice_and_contradictions_are_errors_on_the_later_line() -> None:
    assert "#accept is given twice (also on line 1)" in _error("#accept")
    r = parse_reply("#refer tier2 logs\n#escalate management angry\n", NOW, BERLIN, GROUPS)
    assert r.errors[0].line == 2 and "contradicts #refer on line 1" in r.errors[0].reason
    r = parse_reply("#snooze 1d part\n#status resolved\n", NOW, BERLIN, GROUPS)
    assert "#status contradicts #snooze" in r.errors[0].reason
    r = parse_reply("#status resolved\n#refer tier2 x\n", NOW, BERLIN, GROUPS)
    assert "#refer contradicts #status" in r.errors[0].reason


def test_public_text_without_commands_quotes_and_signature() -> None:
    body = ("#accept\n\n#eta 4h\n\nWe found the cause, a fix is on its way.\n"
            "#this is text now\n\n-- \nTom Engineer\nTier 2\n\n"
            "On Tue, 24 Nov 2026 at 10:00, Support <support@example.test> wrote:\n"
            "> #status resolved\n> Printer on fire\n")
    r = parse_reply(body, NOW, BERLIN, GROUPS)
    assert [type(c) for c in r.commands] == [Accept, Eta]
    assert r.public_text == "We found the cause, a fix is on its way.\n#this is text now"
    assert r.relay_text == r.public_text and not r.rejected and r.to_apply == r.commands


def test_outlook_reply_with_nbsp_and_quoted_block() -> None:
    body = ("#accept\xa0\r\n#next-update\xa02h\r\nLooking into it.\r\n\r\n"
            "From: Support <support@example.test>\r\nSent: Tuesday\r\nTo: tier2\r\n"
            "Subject: RE: referral\r\n\r\n#status resolved\r\n").replace("\r\n", "\n")
    r = parse_reply(body, NOW, BERLIN, GROUPS)
    assert [type(c) for c in r.commands] == [Accept, NextUpdate]
    assert r.public_text == "Looking into it."


def test_internal_keeps_text_from_customer() -> None:
    r = parse_reply("#internal\n#cause cert expired\nNote for us only.", NOW, BERLIN, GROUPS)
    assert r.internal and r.public_text == "Note for us only." and r.relay_text == ""


def test_a_bad_command_changes_nothing() -> None:
    r = parse_reply("#internl\nSecret: the customer's admin broke it.", NOW, BERLIN, GROUPS)
    assert r.rejected and r.to_apply == () and r.relay_text == ""
    assert r.public_text == "Secret: the customer's admin broke it."


def test_mail_without_commands() -> None:
    r = parse_reply("Thanks, works again.\n#accept", NOW, BERLIN, GROUPS)
    assert not r.has_commands and r.public_text == "Thanks, works again.\n#accept"
    assert parse_reply("#1 priority for us!", NOW, BERLIN, GROUPS).commands == ()


@pytest.mark.parametrize(("text", "rating"), [
    ("4", Rating(4, "")),
    ("4 thanks!", Rating(4, "thanks!")),
    ("5/5 great service", Rating(5, "great service")),
    ("3 out of 5", Rating(3, "")),
    ("1 - slow.", Rating(1, "slow.")),
    ("2 stars", Rating(2, "")),
    ("6", None),
    ("0", None),
    ("45 minutes later it broke", None),
    ("2 printers are still broken", None),
    ("3 users cannot log in", None),
    ("4? what does that mean", None),
    ("Thanks a lot", None),
    ("5\n" + "word " * 100, None),
])
def test_rating_reply(text: str, rating: Rating | None) -> None:
    assert parse_rating(text) == rating
    assert parse_reply(text + "\n\n-- \nAnn", NOW, BERLIN, GROUPS).rating == rating


def test_no_rating_when_there_are_commands() -> None:
    assert parse_reply("#accept\n4", NOW, BERLIN, GROUPS).rating is None


def test_times_are_aware_and_local_across_dst() -> None:
    spring = datetime(2026, 3, 28, 12, tzinfo=UTC)  # DST starts in Berlin on the 29th
    eta = parse_reply("#eta tomorrow 12:00", spring, BERLIN, GROUPS).commands[0]
    assert isinstance(eta, Eta) and eta.due.utcoffset() == timedelta(hours=2)
    assert eta.due == datetime(2026, 3, 29, 10, tzinfo=UTC)


def test_transcript_applied() -> None:
    r = parse_reply("#accept\n#eta 4h\n#next-update tomorrow 10:00\nOn it.", NOW, BERLIN,
                    GROUPS)
    text = transcript(r)
    assert text.startswith("Applied:")
    assert "#eta 4h" in text and "expected resolution Wed 2026-11-25 14:00 (Europe/Berlin)" in text
    assert "relayed to the customer" in text
    assert "#internal" in transcript(parse_reply("#internal\nx", NOW, BERLIN, GROUPS))
    assert "no text below" in transcript(parse_reply("#accept", NOW, BERLIN, GROUPS))


def test_transcript_rejected_lists_every_line_with_reason() -> None:
    r = parse_reply("#accept\n#eta yesterday\n#refer tier9 x\nHello", NOW, BERLIN, GROUPS)
    text = transcript(r)
    assert text.startswith("Nothing was applied")
    lines = text.splitlines()
    assert any("#accept" in ln and "fine, but not applied" in ln for ln in lines)
    assert any("#eta yesterday" in ln and "NOT APPLIED" in ln and "in the past" in ln
               for ln in lines)
    assert any("#refer tier9 x" in ln and "unknown group 'tier9'" in ln for ln in lines)
    assert "not relayed" in text


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.sampled_from(
    [*"#acepnrstuywd0123456789 :-\n>hHmM", "#eta ", "#snooze ", "#refer ", "tier2 ",
     "tomorrow ", "yesterday ", "2026-12-01 ", "-- \n", "#status ", "resolved"]), max_size=40))
def test_no_text_crashes_the_parser(parts: list[str]) -> None:
    r = parse_reply("".join(parts), NOW, BERLIN, GROUPS)
    assert isinstance(transcript(r), str)
    for c in r.to_apply:
        for due in (getattr(c, "due", None), getattr(c, "until", None)):
            assert due is None or due > NOW


@pytest.mark.parametrize(("body", "notice"), [
    ("#accept\n#eta 4h\nOn it.", "status-accepted"),
    ("#refer vendor-acme firmware\nHanded to the vendor.", "status-referred"),
    ("#escalate management angry\n", "status-referred"),
    ("#escalate angry, no answer in 3 days\nx", "status-update"),
    ("#escalate angry, no answer in 3 days\n", None),
    ("#status resolved\n#cause cert\nFixed.", "status-resolved"),
    ("#eta tomorrow 12:00\nTakes longer.", "status-eta-changed"),
    ("#next-update 2h\nStill testing.", "status-update"),
    ("Just text from tier 2.", "status-update"),
    ("#cause cert", None),
    ("#internal\n#status resolved\nnote", None),
    ("#accept\n#eta yesterday\nOn it.", None),
])
def test_customer_notice(body: str, notice: str | None) -> None:
    assert parse_reply(body, NOW, BERLIN, GROUPS).customer_notice() == notice


def test_accepted_without_time() -> None:
    assert parse_reply("#accept", NOW, BERLIN, GROUPS).accepted_without_time
    assert not parse_reply("#accept\n#eta 4h", NOW, BERLIN, GROUPS).accepted_without_time
    assert not parse_reply("#accept\n#next-update 4h", NOW, BERLIN,
                           GROUPS).accepted_without_time
    assert not parse_reply("#accept\n#bogus", NOW, BERLIN, GROUPS).accepted_without_time
