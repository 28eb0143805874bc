"""The health verdict and the alert decisions: pure functions of views, facts and now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from mailflow.alerts import DOWN, RECOVERED, alert_key, due_alerts
from mailflow.health import SMTP_DOWN_NOTE, OutboxFacts, is_down, verdict
from mailflow.liveness import Liveness, PartView
from mailflow.metrics import Metrics

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
AFTER = timedelta(minutes=5)
BOX = "support@example.test/INBOX"


def _box(**kw: object) -> PartView:
    return PartView(BOX, connected=True, last_success=NOW - timedelta(seconds=30),
                    **kw)  # type: ignore[arg-type]


def test_a_blip_shorter_than_after_is_not_down() -> None:
    v = _box(failing_since=NOW - timedelta(minutes=4), last_error="timeout")
    assert not is_down(v, NOW, AFTER)
    assert is_down(_box(failing_since=NOW - AFTER, last_error="x"), NOW, AFTER)


def test_a_mailbox_owned_by_another_process_is_not_ours_to_judge() -> None:
    v = PartView(BOX, owned=False, failing_since=NOW - timedelta(hours=1))
    assert not is_down(v, NOW, AFTER)


def test_verdict_ok_with_outbox_and_digest_facts() -> None:
    facts = OutboxFacts({"pending": 3, "sending": 1, "failed": 2},
                        NOW - timedelta(seconds=90), NOW - timedelta(hours=3))
    v = verdict([_box(), PartView("sender")], facts, NOW, AFTER)
    assert v.ok and v.status == 200 and v.problems == []
    assert v.body["outbox"] == {"backlog": 4, "failed": 2,
                                "oldest_due": "2026-11-25T09:58:30+00:00",
                                "oldest_due_age_seconds": 90}
    assert v.body["last_digest"] == "2026-11-25T07:00:00+00:00"
    assert v.body["mailboxes"][0]["connected"] is True


def test_verdict_503_for_a_mailbox_down_and_names_it() -> None:
    bad = _box(failing_since=NOW - timedelta(minutes=6), last_error="login refused")
    v = verdict([bad, PartView("sender")], OutboxFacts(), NOW, AFTER)
    assert v.status == 503 and v.body["status"] == "failing"
    assert v.problems == [f"mailbox {BOX}: failing since 2026-11-25T09:54:00+00:00: "
                          "login refused"]


def test_verdict_sender_down_says_the_alert_waits_for_smtp() -> None:
    sender = PartView("sender", failing_since=NOW - timedelta(minutes=10),
                      last_error="cannot connect to SMTP")
    v = verdict([_box(), sender], OutboxFacts(), NOW, AFTER)
    assert not v.ok and v.body["notes"] == [SMTP_DOWN_NOTE]


def test_verdict_database_not_answering() -> None:
    v = verdict([_box()], None, NOW, AFTER)
    assert v.problems == ["database: not answering"] and "outbox" not in v.body


def test_alert_once_per_day_while_down_then_recovery() -> None:
    today = date(2026, 11, 25)
    down = _box(failing_since=NOW - timedelta(minutes=6), last_error="login refused")
    first = due_alerts([down], NOW, today, AFTER, set(), set())
    assert [(a.part, a.state, a.key) for a in first] == [
        (BOX, DOWN, f"alert:{BOX}:2026-11-25:down")]
    # Queued already today: nothing more until the next day.
    assert due_alerts([down], NOW, today, AFTER, {BOX}, {first[0].key}) == []
    nxt = due_alerts([down], NOW + timedelta(days=1), date(2026, 11, 26), AFTER, {BOX},
                     {first[0].key})
    assert [a.key for a in nxt] == [alert_key(BOX, date(2026, 11, 26), DOWN)]
    # Working again: one recovery, only for a part that was reported down.
    ok = _box()
    rec = due_alerts([ok], NOW, today, AFTER, {BOX}, {first[0].key})
    assert [(a.state, a.key) for a in rec] == [(RECOVERED, f"alert:{BOX}:2026-11-25:recovered")]
    assert due_alerts([ok], NOW, today, AFTER, set(), set()) == []


def test_failing_again_but_not_yet_long_is_no_recovery() -> None:
    flapping = _box(failing_since=NOW - timedelta(seconds=10), last_error="reset")
    assert due_alerts([flapping], NOW, date(2026, 11, 25), AFTER, {BOX}, set()) == []


def test_metrics_count_batches_mail_and_expose_outbox_depth() -> None:
    m = Metrics()
    m.on_batch({"new": 2, "join": 1, "duplicate": 1}, [NOW - timedelta(seconds=3), None],
               NOW)
    m.on_mail("acknowledgment", "sent", 1.5)
    m.on_mail("notice", "retrying", None)
    m.watch_outbox(lambda: ({"pending": 4}, 12.0))
    live = Liveness(NOW)
    live.mailbox(BOX).failed("login refused", NOW)
    m.refresh(live)
    text = m.exposition().decode()
    assert 'mailflow_messages_ingested_total{outcome="new"} 2.0' in text
    assert "mailflow_tickets_opened_total 2.0" in text
    assert 'mailflow_mail_total{kind="acknowledgment",outcome="sent"} 1.0' in text
    assert "mailflow_ingest_latency_seconds_count 1.0" in text
    assert "mailflow_delivery_latency_seconds_count 1.0" in text
    assert 'mailflow_outbox_depth{status="pending"} 4.0' in text
    assert "mailflow_outbox_oldest_due_seconds 12.0" in text
    assert f'mailflow_mailbox_up{{mailbox="{BOX}"}} 0.0' in text


def test_admin_alert_renders_error_text_as_written_and_escaped() -> None:
    from mailflow.compose import Composer
    from mailflow.template_samples import sample_context

    subject, text, html = Composer(None).render("admin-alert", sample_context("admin-alert"))
    assert subject == "ALERT: mailbox support@example.test/INBOX is down (mail-1)"
    assert "{{ 7*7 }} <b>" in text and "49" not in text
    assert "&lt;b&gt;" in html and "<b>" not in html
