"""The digest's context and templates on the hand-built day of test_digest_metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailflow.compose import Composer, Envelope
from mailflow.digest.metrics import backlog, counts
from mailflow.digest.records import MailHealth, Window, days_before, escalation_rows
from mailflow.digest.report import Inputs, Params, context, duration
from mailflow.digest.signals import hits_of
from tests.unit.test_digest_metrics import (
    CLOCKS,
    DAY,
    DAYS,
    EARLY,
    FCR,
    MONTH,
    REFERRALS,
    TARGETS,
    UTCZ,
    D,
)

NOW = datetime(2026, 11, 25, 7, tzinfo=UTC)
P = Params(targets=TARGETS, labels={1: "critical", 2: "high", 3: "normal"},
           accept_within={("tier2", 3): timedelta(hours=1), ("vendor", 1): timedelta(hours=2)},
           known_rules=("outage", "vip", "unused"))


def inputs(tickets=DAYS, clocks=CLOCKS, referrals=REFERRALS) -> Inputs:  # type: ignore[no-untyped-def]
    span = Window(MONTH.start + timedelta(days=1), DAY.end)
    return Inputs(
        D, DAY, NOW, counts(tickets, DAY, FCR, EARLY, clocks),
        counts(tickets, days_before(D, 7, UTCZ), FCR, EARLY),
        counts(tickets, MONTH, FCR, EARLY), tuple(tickets), backlog(tickets, DAY.end),
        tuple(escalation_rows(tickets)), clocks, referrals, hits_of(tickets, DAY),
        hits_of(tickets, span), MailHealth())


def test_context_is_json_and_says_where_to_act() -> None:
    ctx = context(inputs(), P)
    json.dumps(ctx)  # the outbox stores it as JSON
    assert ctx["volume"] == {"opened": 3, "messages": 6, "handled": 4, "resolved": 4,
                             "responses": 3}
    assert ctx["first_response"]["median"] == "45m"
    assert ctx["resolution"]["mean"] == "4h 24m" and ctx["resolution"]["fcr"] == "50.0 %"
    assert ctx["escalations"]["flagged"] and ctx["escalations"]["ratio"] == "33.3 %"
    act = "\n".join(ctx["act"])
    assert "Escalation ratio 33.3 % is above 2.0 %" in act
    assert "SUP-5" in act  # the breach
    assert "tier2: no ETA or next update on SUP-6" in act
    assert "SUP-3 (2/5)" in act
    assert [t["group"] for t in ctx["tiers"]] == ["tier2", "vendor"]


def test_templates_render_both_parts() -> None:
    composer = Composer(Path("/nonexistent"))
    ctx = context(inputs(), P)
    subject, text, html = composer.render("digest", ctx)
    assert subject == "Support digest 2026-11-24"
    assert "WHERE TO ACT" in text and "BREACH SUP-5" in text and "Never fired in 30 days: " \
        "unused" in text
    assert "<script" not in html and "<img" not in html and "http" not in html.lower()
    assert "SUP-6" in html and 'bgcolor="#2f6fb3"' in html
    msg = composer.build("digest", ctx, Envelope("support@example.test", "Support",
                                                 "boss@example.test", "x@example.test", NOW))
    assert msg.get_content_type() == "multipart/alternative"


def test_empty_day_renders() -> None:
    ctx = context(inputs((), (), ()), P)
    _, text, _ = Composer(None).render("digest", ctx)
    assert ctx["act"] == [] and "Nothing needs your attention today." in text


def test_duration_format() -> None:
    assert [duration(timedelta(minutes=m)) for m in (0, 59, 65, 47 * 60, 50 * 60)] == [
        "0m", "59m", "1h 05m", "47h 00m", "2d 2h"]
    assert duration(None) == "-"


def test_tickets_of_another_desk_are_named_with_its_prefix(tmp_path: Path) -> None:
    from dataclasses import replace
    from functools import partial

    from mailflow.accounts import ticket_ref
    from mailflow.config import validate

    settings = validate({
        "support_address": "support@example.test", "imap": {"username": "s", "port": 1},
        "mailboxes": [{"name": "billing", "support_address": "billing@example.test",
                       "ticket_prefix": "BIL", "imap": {"username": "b", "port": 2}}]},
        base_dir=tmp_path)
    p = replace(P, ref=partial(ticket_ref, settings))
    act = "\n".join(context(replace(inputs(), desks={5: "billing"}), p)["act"])
    assert "BIL-5" in act and "SUP-5" not in act  # the breach, on the billing desk
    assert "SUP-6" in act  # the main mailbox's
