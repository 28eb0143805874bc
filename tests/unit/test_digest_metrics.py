"""The digest's figures on a hand-built day; every expected value worked out by hand.

The day is 2026-11-24 (UTC). Six tickets:
T1 opened 08:00 sev 2, answered 09:00, customer wrote 10:00, answered 12:00, resolved
   14:00, rated 5 at 15:00; rules outage.
T2 opened 09:00 sev 3, answered 09:30, referred to tier2 09:45 (accepted 10:15), waited
   on the customer 10:00-11:00, resolved 13:00; rules outage, vip.
T3 opened the day before 10:00, answered 11:00, resolved 12:00; reopened 08:00,
   resolved 09:00, reopened 10:00, resolved 16:00 (reopened twice on the day); rated 2.
T4 opened the day before 20:00 sev 1, answered 20:30, escalated 21:00, waited on the
   customer 22:00 to 02:00 (a pause across midnight), resolved 06:00.
T5 opened 18:00 sev 1 by angry@, escalated 19:00 (age 1h), asked for escalation 20:00;
   open, with tier2, referred to a vendor at 19:30 (not accepted).
T6 opened 14 days earlier, with tier2 since, accepted without an ETA; open.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from mailflow.digest.levels import Met, compliance, tiers
from mailflow.digest.metrics import (
    Counts,
    backlog,
    counts,
    escalations,
    first_response,
    reply_speed,
    resolution,
    spread,
)
from mailflow.digest.records import (
    ClockRecord,
    Escalation,
    MailboxRecord,
    MailHealth,
    ReferralRecord,
    TicketRecord,
    Window,
    day_window,
    days_before,
    escalation_rows,
)
from mailflow.digest.signals import hits_of, mail_health, rule_hits, satisfaction, trends

H = timedelta(hours=1)
M = timedelta(minutes=1)
UTCZ = ZoneInfo("UTC")
D = date(2026, 11, 24)
DAY = day_window(D, UTCZ)
MONTH = days_before(D, 30, UTCZ)
FCR = timedelta(days=7)
EARLY = 4 * H
TARGETS = {1: H, 2: 4 * H, 3: timedelta(days=1)}


def at(hour: int, minute: int = 0, day: int = 24) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


T1 = TicketRecord(1, at(8), severity=2, status="resolved", rules=("outage",),
                  customer_messages=(at(10),), responses=(at(9), at(12)),
                  resolutions=(at(14),), ratings=((at(15), 5),))
T2 = TicketRecord(2, at(9), status="resolved", rules=("outage", "vip"),
                  responses=(at(9, 30),), waits=((at(10), at(11)),), referrals=(at(9, 45),),
                  resolutions=(at(13),), owner_group="tier2")
T3 = TicketRecord(3, at(10, day=23), status="resolved", responses=(at(11, day=23),),
                  customer_messages=(at(8), at(10)),
                  resolutions=(at(12, day=23), at(9), at(16)), reopens=(at(8), at(10)),
                  ratings=((at(17), 2),))
T4 = TicketRecord(4, at(20, day=23), severity=1, status="resolved",
                  responses=(at(20, 30, day=23),), waits=((at(22, day=23), at(2)),),
                  resolutions=(at(6),),
                  escalations=(Escalation(at(21, day=23), "remind", "first response", H),))
T5 = TicketRecord(5, at(18), requester="angry@example.test", severity=1,
                  owner_group="tier2",
                  escalations=(Escalation(at(19), "remind", "first response due", H),),
                  escalation_requests=(at(20),))
T6 = TicketRecord(6, at(9, day=10), owner_group="tier2", status="referred",
                  referrals=(at(10, day=10),))
DAYS = (T1, T2, T3, T4, T5, T6)

CLOCKS = (
    ClockRecord(1, "first_response", 2, None, at(8), at(12), at(9), "met"),
    ClockRecord(5, "first_response", 1, "tier2", at(18), at(19), None, "breached"),
    # Paused across midnight: decided on neither day.
    ClockRecord(4, "resolution", 1, None, at(20, day=23), None, None, "paused"),
    ClockRecord(6, "next_update", 3, "tier2", at(9, day=23), at(10), at(9), "met"),
    ClockRecord(6, "resolution", 3, "tier2", at(9, day=10), at(9, day=20), None, "breached"),
)
REFERRALS = (
    ReferralRecord(2, "tier2", 3, at(9, 45), at(10, 15), eta=at(12)),
    ReferralRecord(6, "tier2", 3, at(10, day=10), at(12, day=10)),
    ReferralRecord(5, "vendor", 1, at(19, 30)),
)


def test_counts_of_the_day() -> None:
    c = counts(DAYS, DAY, FCR, EARLY, CLOCKS)
    assert c == Counts(
        opened=3, customer_messages=3 + 3, responses=3, handled=4, resolved=4,
        # The day's new tickets resolved since: T1 and T2; T2 was referred.
        first_resolved=2, first_contact=1,
        reopened=1, reopens=2, escalated=1, escalations=1, early_escalations=1,
        escalation_requests=1, ratings=2, rating_sum=7, clocks_met=2, clocks_breached=1)
    assert c.resolution_rate == 4 / 3  # resolved / received: older tickets were solved
    assert c.reopen_rate == 1 / 4
    assert c.fcr_rate == 1 / 2
    assert c.escalation_ratio == 1 / 3
    assert c.sla_compliance == 2 / 3
    assert c.rating_average == 3.5


def test_no_tickets() -> None:
    c = counts((), DAY, FCR, EARLY)
    assert c == Counts()
    assert None is c.resolution_rate is c.fcr_rate is c.escalation_ratio is c.rating_average
    assert first_response((), DAY, TARGETS).spread.count == 0
    assert first_response((), DAY, TARGETS).share is None
    assert resolution((), DAY).median is None
    b = backlog((), DAY.end)
    assert b.total == 0 and b.oldest == ()
    e = escalations([], DAY, MONTH, 0, EARLY, 0.02)
    assert e.count == 0 and e.ratio is None and not e.flagged
    assert satisfaction((), DAY).average is None
    assert compliance((), DAY).total.share is None
    assert tiers((), (), DAY, {}) == ()
    assert all(t.day in (0, None) for t in trends(c, c, c))


def test_first_response_and_reply_speed() -> None:
    fr = first_response(DAYS, DAY, TARGETS)
    # T1 after 1h (target 4h), T2 after 30m (target 1d); T5 not answered yet.
    assert fr.spread.count == 2 and fr.spread.median == 45 * M and fr.spread.p90 == H
    assert fr.within == 2 and fr.share == 1.0
    # Only T1's 12:00 answer replies to a follow-up (10:00): 2h.
    rs = reply_speed(DAYS, DAY)
    assert (rs.count, rs.median) == (1, 2 * H)


def test_resolution_leaves_out_waits_and_times_each_episode() -> None:
    # T1 6h; T2 4h less the 1h wait = 3h; T3 1h (08-09) and 6h (10-16), each from its
    # reopen; T4 10h less the 4h pause across midnight = 6h.
    r = resolution(DAYS, DAY)
    assert r.count == 5
    assert r.mean == timedelta(hours=22 / 5) and r.median == 6 * H and r.p90 == 6 * H


def test_ticket_reopened_twice() -> None:
    c = counts((T3,), DAY, FCR, EARLY)
    assert (c.reopens, c.reopened, c.resolved, c.first_resolved) == (2, 1, 1, 0)
    # T3 is one of the day before's new tickets: resolved, but reopened within 7 days.
    before = counts((T3,), day_window(date(2026, 11, 23), UTCZ), FCR, EARLY)
    assert (before.first_resolved, before.first_contact) == (1, 0)
    # With a one-hour window the reopen the next morning no longer takes it back.
    assert counts((T3,), day_window(date(2026, 11, 23), UTCZ), H, EARLY).first_contact == 1


def test_pause_spanning_midnight() -> None:
    # The wait 22:00-02:00 is split by midnight; the resolution on the 24th loses all 4h.
    assert resolution((T4,), DAY).mean == 6 * H
    # Its paused clock is neither met nor breached on either day.
    assert compliance(CLOCKS[2:3], DAY).total == Met()
    assert compliance(CLOCKS[2:3], day_window(date(2026, 11, 23), UTCZ)).total == Met()


def test_backlog_by_age_and_severity() -> None:
    b = backlog(DAYS, DAY.end)
    assert b.total == 2
    assert b.bands["under 1 day"] == {1: 1} and b.bands["7-30 days"] == {3: 1}
    assert [o[0] for o in b.oldest] == [6, 5]


def test_escalations() -> None:
    e = escalations(escalation_rows(DAYS), DAY, MONTH, opened=3, early=EARLY,
                    flag_above=0.02, product_gap=2)
    assert (e.count, e.tickets, e.early, e.requests) == (1, 1, 1, 1)
    assert e.ratio == 1 / 3 and e.flagged
    assert e.by_reason == (("first response due", 1),) and e.by_step == (("remind", 1),)
    # angry@ escalated and asked again; T4's customer escalated once.
    assert e.repeat_customers == (("angry@example.test", 2),)
    assert e.repeat_categories == (("technical", 2),)  # T4 and T5 in 30 days
    low = escalations(escalation_rows(DAYS), DAY, MONTH, opened=100, early=EARLY,
                      flag_above=0.02)
    assert low.ratio == 0.01 and not low.flagged


def test_service_levels() -> None:
    c = compliance(CLOCKS, DAY)
    assert c.by_severity == {1: Met(0, 1), 2: Met(1, 0), 3: Met(1, 0)}
    assert c.by_group == {"frontline": Met(1, 0), "tier2": Met(1, 1)}
    assert [(b.ticket, b.kind) for b in c.breaches] == [(5, "first_response")]
    assert c.total.share == 2 / 3


def test_tier_groups_against_objectives() -> None:
    objectives = {("tier2", 3): H, ("vendor", 1): 2 * H}
    t2, vendor = tiers(REFERRALS, CLOCKS, DAY, objectives)
    assert t2.group == "tier2" and t2.received == 1 and t2.accepted == Met(1, 0)
    assert t2.updates == Met(1, 0) and t2.resolved == Met() and t2.missing_eta == (6,)
    # Referred 19:30, 2h to accept, nothing by midnight.
    assert vendor.group == "vendor" and vendor.received == 1 and vendor.not_accepted_late == 1
    slow = tiers(REFERRALS[:1], (), DAY, {("tier2", 3): 10 * M})
    assert slow[0].accepted == Met(0, 1)


def test_satisfaction() -> None:
    s = satisfaction(DAYS, DAY)
    assert (s.count, s.average, s.low) == (2, 3.5, ((3, 2),))


def test_rule_hits() -> None:
    day = hits_of(DAYS, DAY)
    assert day == Counter({"outage": 2, "vip": 1})
    r = rule_hits(day, 3, hits_of(DAYS, Window(MONTH.start, DAY.end)),
                  known=["outage", "vip", "unused"])
    assert r.never == ("unused",) and r.most == ("outage",)
    assert [(h.rule, h.day, h.month) for h in r.rules] == [
        ("outage", 2, 2), ("unused", 0, 0), ("vip", 1, 1)]


def test_mail_health() -> None:
    now = at(7, day=25)
    h = mail_health(MailHealth(quarantined=1, quarantine_waiting=3, outbox_pending=2,
                               oldest_pending=now - 2 * H,
                               mailboxes=(MailboxRecord("INBOX", now - H),
                                          MailboxRecord("Tier", now - timedelta(days=3)))),
                    now)
    assert h.stalled == (("Tier", timedelta(days=3)),) and h.outbox_oldest == 2 * H
    assert not h.ok
    assert mail_health(MailHealth(mailboxes=(MailboxRecord("INBOX", now - H),)), now).ok


def test_spread_median_and_nearest_rank_p90() -> None:
    s = spread([timedelta(minutes=m) for m in (10, 1, 9, 2, 8, 3, 7, 4, 6, 5)])
    assert (s.median, s.p90, s.mean) == (5.5 * M, 9 * M, 5.5 * M)
    assert spread([H]).p90 == H


def test_trends_per_day_averages_and_rates() -> None:
    day = Counts(opened=10, resolved=5)
    week = Counts(opened=70, resolved=70)
    month = Counts(opened=300, resolved=150)
    t = {x.name: x for x in trends(day, week, month)}
    assert (t["tickets opened"].day, t["tickets opened"].week,
            t["tickets opened"].month) == (10, 10, 10)
    assert (t["resolution rate"].day, t["resolution rate"].week,
            t["resolution rate"].month) == (0.5, 1.0, 0.5)
