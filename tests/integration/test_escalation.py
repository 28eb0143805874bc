"""Escalation over Dovecot + SMTP with second-long service levels and a controlled clock:
each step once, the customer told, none for answered or waiting tickets (issue 12)."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, func, select, update

from mailflow.clock import FrozenClock
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.scheduler import Scheduler
from mailflow.store.db import transaction
from mailflow.store.models import EscalationStep, OutboxRow, Ticket, TicketClock, TicketEvent
from mailflow.tickets import Status
from mailflow.tickets.apply import apply
from mailflow.tickets.effects import SetStatus
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail

RULES = Path(__file__).resolve().parents[2] / "rules"

SLA = """
policies:
  - name: fast
    severity: [1, 2, 3]
    calendar: 24x7
    first_response: 4s
    update: 1h
    resolution: 1d
"""
ESCALATION = """
late_after: 1h
management: [robot@example.test]
chains:
  technical:
    - name: remind
      clock: first_response
      at: -50%
      actions: [remind-owner]
    - name: missed
      clock: first_response
      at: 0
      actions: [notify-leader, raise-severity, customer-update]
    - name: manager
      clock: first_response
      at: +4s
      actions: [notify-management]
  administrative: []
"""
GROUPS = """
frontline:
  leader: other@example.test
  members: [other@example.test]
groups: {}
"""

ESCALATION_REQUEST_RULE = """
rules:
  - name: escalation-request
    when:
      body: {regex: "(?i)escalate|speak to a manager"}
    set:
      tags: [escalation-request]
"""


def _rules(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    shutil.copytree(RULES, d)
    (d / "sla.yaml").write_text(SLA)
    (d / "escalation.yaml").write_text(ESCALATION)
    (d / "groups.yaml").write_text(GROUPS)
    text = (d / "classify.yaml").read_text()
    # The stock rules route billing mail to groups this test does not define.
    (d / "classify.yaml").write_text(text.split("\nrules:")[0] + ESCALATION_REQUEST_RULE)
    return d


def _step(app, clock: FrozenClock, sched: Scheduler, to: datetime) -> list[tuple[int, str, bool]]:  # type: ignore[no-untyped-def]
    clock.set(to)
    fired = []
    while True:
        res = sched.tick(clock.now())
        fired += res.fired
        if not res.looked:
            break
    asyncio.run(app.sender.deliver_due())
    return fired


def _opened_at(app) -> datetime:  # type: ignore[no-untyped-def]
    """Clocks start when the mail arrived (its INTERNALDATE, set by Dovecot)."""
    with app.sessions() as s:
        at = s.scalar(select(func.min(Ticket.created_at)))
    assert at is not None
    return at


def _subjects(stack: MailStack, user: str) -> list[str]:
    from email import message_from_bytes

    return [str(message_from_bytes(m)["Subject"]) for m in stack.messages(user)]


def test_unanswered_ticket_escalates_each_step_once(stack: MailStack, db_url: str, make_app,
                                                    tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = make_app(stack, db_url, clock, rules_dir=str(_rules(tmp_path)))
    sched = Scheduler(app.settings, app.sessions)
    stack.append(SUPPORT, [mail(subject="Printer broken", sender=CUSTOMER)])
    run_once(app)
    T0 = _opened_at(app)
    assert len(stack.wait_for(CUSTOMER, 1)) == 1  # the acknowledgment

    assert _step(app, clock, sched, T0 + timedelta(seconds=1)) == []
    assert _step(app, clock, sched, T0 + timedelta(seconds=2)) == [(1, "remind", False)]
    assert _step(app, clock, sched, T0 + timedelta(seconds=3)) == []
    assert _step(app, clock, sched, T0 + timedelta(seconds=4)) == [(1, "missed", False)]
    assert _step(app, clock, sched, T0 + timedelta(seconds=8)) == [(1, "manager", False)]
    assert _step(app, clock, sched, T0 + timedelta(seconds=60)) == []

    other = _subjects(stack, "other@example.test")  # front-line leader: reminder + missed
    assert len(other) == 2 and all(s.startswith("Escalation:") for s in other)
    assert len(stack.wait_for("robot@example.test", 1)) == 1  # management, once
    customer = stack.wait_for(CUSTOMER, 2)
    assert len(customer) == 2 and b"escalated" in customer[1]
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None and t.severity == 2  # raised from 3 by "missed"
        steps = s.scalars(select(EscalationStep.step).order_by(EscalationStep.fired_at)).all()
        assert sorted(steps) == ["manager", "missed", "remind"]
        events = s.scalars(select(TicketEvent).where(TicketEvent.kind == "escalated")).all()
        assert [e.data["step"] for e in events] == ["remind", "missed", "manager"]
        assert all(e.data["age_seconds"] in (2, 4, 8) for e in events)
        clocks = {c.kind: c.state for c in s.scalars(select(TicketClock))}
        assert clocks["first_response"] == "breached"


def test_stored_clocks_are_written_only_when_they_change(stack: MailStack, db_url: str,
                                                         make_app, tmp_path: Path) -> None:
    """A look at a ticket that changes none of its clocks writes no clock rows; one that
    changes a clock (now breached) replaces them."""
    clock = FrozenClock(datetime.now(UTC))
    app = make_app(stack, db_url, clock, rules_dir=str(_rules(tmp_path)))
    sched = Scheduler(app.settings, app.sessions)
    stack.append(SUPPORT, [mail(subject="Printer broken", sender=CUSTOMER)])
    run_once(app)
    T0 = _opened_at(app)
    assert _step(app, clock, sched, T0) == []  # the first look stores the clocks
    with app.sessions() as s:
        before = {(c.kind, c.state, c.due_at) for c in s.scalars(select(TicketClock))}
    assert ("first_response", "running", T0 + timedelta(seconds=4)) in before
    writes: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "ticket_clocks" in statement and not statement.lstrip().upper().startswith(
                "SELECT"):
            writes.append(statement)

    engine = app.sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        def look(at: datetime) -> None:
            with transaction(app.sessions) as s:  # "compute my clocks again"
                s.execute(update(Ticket).values(next_due_at=at))
            clock.set(at)
            assert sched.tick(at).looked == 1

        look(T0 + timedelta(seconds=1))  # nothing changed: no clock written
        assert writes == []
        look(T0 + timedelta(seconds=5))  # first response now breached (and steps fire)
        assert writes, "the breached clock was not stored"
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    with app.sessions() as s:
        after = {(c.kind, c.state) for c in s.scalars(select(TicketClock))}
    assert ("first_response", "breached") in after


def test_answered_and_waiting_tickets_do_not_escalate(stack: MailStack, db_url: str,
                                                      make_app, tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = make_app(stack, db_url, clock, rules_dir=str(_rules(tmp_path)))
    sched = Scheduler(app.settings, app.sessions)
    stack.append(SUPPORT, [mail(subject="answered", sender="a@customers.test"),
                           mail(subject="waiting", sender="b@customers.test")])
    run_once(app)
    T0 = _opened_at(app)
    with transaction(app.sessions) as s:
        # Ticket 2 waits on the customer; ticket 1 is answered (a status update sent).
        apply(s, [SetStatus(2, Status.WAITING, "asked for the serial number", "ann")],
              app.ingestor.apply_context(T0))
        s.add(OutboxRow(ticket_id=1, kind="status-update", mail_from=SUPPORT,
                        recipient="a@customers.test", message_id="answer-1@example.test",
                        template="status-update", context={}, status="sent", attempts=1,
                        next_attempt_at=T0, created_at=T0, sent_at=T0 + timedelta(seconds=1)))
        s.flush()
        oid = s.scalar(select(OutboxRow.id).where(OutboxRow.message_id
                                                   == "answer-1@example.test"))
        s.add(TicketEvent(ticket_id=1, kind="mail-sent", at=T0 + timedelta(seconds=1),
                          actor="mailflow", summary="answer", data={"outbox_id": oid}))
    for sec in (2, 4, 8, 60):
        assert _step(app, clock, sched, T0 + timedelta(seconds=sec)) == []
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(EscalationStep)) == 0
        states = {(c.ticket_id, c.kind): c.state for c in s.scalars(select(TicketClock))}
    assert states[(1, "first_response")] == "met"
    assert states[(2, "first_response")] == "paused"


def test_steps_missed_during_downtime_fire_once_each_in_order_marked_late(
        stack: MailStack, sqlite_url: str, make_app, tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = make_app(stack, sqlite_url, clock, rules_dir=str(_rules(tmp_path)))
    sched = Scheduler(app.settings, app.sessions)
    stack.append(SUPPORT, [mail(subject="during downtime", sender=CUSTOMER)])
    run_once(app)
    T0 = _opened_at(app)
    # Down for three hours: every step is due, long ago.
    fired = _step(app, clock, sched, T0 + timedelta(hours=3))
    assert fired == [(1, "remind", True), (1, "missed", True), (1, "manager", True)]
    # Fired together, each person is mailed once, the last step's mail: the leader gets
    # the "missed" notice, not also a reminder that the response is due soon.
    leader = stack.messages("other@example.test")
    assert len(leader) == 1 and b"missed" in leader[0]
    assert len(stack.messages(CUSTOMER)) == 2  # the acknowledgment, one "escalated"
    with app.sessions() as s:
        events = s.scalars(select(TicketEvent).where(TicketEvent.kind == "escalated")
                           .order_by(TicketEvent.id)).all()
        assert [e.data["step"] for e in events] == ["remind", "missed", "manager"]
        assert events[0].data["mails"] == [{"to": "other@example.test",
                                             "template": "escalation-notice",
                                             "role": "reminder to the owner",
                                             "superseded_by": "missed"}]
    # A second scheduler (a restart) finds nothing left to fire.
    again = Scheduler(app.settings, app.sessions)
    assert _step(app, clock, again, T0 + timedelta(hours=3, seconds=1)) == []
    assert len(stack.wait_for("robot@example.test", 1)) == 1


def test_customer_escalation_request_is_held_while_levels_are_met_then_escalates(
        stack: MailStack, db_url: str, make_app, tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = make_app(stack, db_url, clock, rules_dir=str(_rules(tmp_path)))
    sched = Scheduler(app.settings, app.sessions)
    first = mail(subject="Printer broken", sender=CUSTOMER)
    stack.append(SUPPORT, [first])
    run_once(app)
    T0 = _opened_at(app)
    ack = stack.wait_for(CUSTOMER, 1)[0]
    from email import message_from_bytes

    reply_addr = str(message_from_bytes(ack)["Reply-To"])
    # One second in, the customer wants a manager: nothing is breached yet.
    stack.append(SUPPORT, [mail(sender=CUSTOMER, to=reply_addr, subject="Re: Printer broken",
                                body="I want to speak to a manager now.")])
    clock.set(T0 + timedelta(seconds=1))
    run_once(app)
    assert _step(app, clock, sched, T0 + timedelta(seconds=1)) == []
    lead = stack.wait_for("other@example.test", 1)
    assert len(lead) == 1 and b"asked for escalation" in lead[0]
    told = stack.wait_for(CUSTOMER, 2)
    assert len(told) == 2 and b"committed to" in told[1]
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TicketEvent)
                        .where(TicketEvent.kind == "escalated")) == 0
    # After the first response is breached, a new request escalates at once.
    stack.append(SUPPORT, [mail(sender=CUSTOMER, to=reply_addr, subject="Re: Printer broken",
                                body="Still nothing. Please escalate.")])
    clock.set(T0 + timedelta(seconds=30))
    run_once(app)
    _step(app, clock, sched, T0 + timedelta(seconds=30))
    with app.sessions() as s:
        esc = s.scalars(select(TicketEvent).where(TicketEvent.kind == "escalated")).all()
    assert any(e.data.get("step") == "customer-request" for e in esc)
    assert len(stack.wait_for("robot@example.test", 1)) >= 1  # management told
    # The missed step and the request fired in one tick: one "escalated" update for the
    # customer (the request's), not one from each.
    later = stack.messages(CUSTOMER)[2:]
    assert len(later) == 1 and b"escalated" in later[0]


FALLBACK_GROUPS = """
frontline:
  leader: other@example.test
  members: [other@example.test]
groups:
  tier2:
    address: tier2@example.test
    description: Second-line technical support
    leader: tier2@example.test
    members: [tier2@example.test]
    fallback: backup
    objectives:
      1: {accept: 4s, update: 1h, resolve: 1d}
      2: {accept: 4s, update: 1h, resolve: 1d}
      3: {accept: 4s, update: 1h, resolve: 1d}
  backup:
    address: robot@example.test
    description: The backup team
    leader: robot@example.test
    members: [robot@example.test]
    objectives:
      1: {accept: 1h, update: 1h, resolve: 1d}
      2: {accept: 1h, update: 1h, resolve: 1d}
      3: {accept: 1h, update: 1h, resolve: 1d}
"""
FALLBACK_ESCALATION = """
late_after: 1h
management: [other@example.test]
chains:
  technical:
    - name: accept-reminder
      clock: tier_accept
      at: -50%
      actions: [remind-owner]
    - name: accept-missed
      clock: tier_accept
      at: 0
      actions: [refer-fallback, customer-update]
  administrative: []
"""


def test_referral_not_accepted_in_time_goes_to_the_fallback_once(
        stack: MailStack, db_url: str, make_app, tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    (rules / "groups.yaml").write_text(FALLBACK_GROUPS)
    (rules / "escalation.yaml").write_text(FALLBACK_ESCALATION)
    (rules / "sla.yaml").write_text(SLA.replace("first_response: 4s", "first_response: 1h"))
    classify = (rules / "classify.yaml").read_text()
    (rules / "classify.yaml").write_text(classify.replace("owner: frontline", "owner: tier2"))
    clock = FrozenClock(datetime.now(UTC))
    app = make_app(stack, db_url, clock, rules_dir=str(rules))
    sched = Scheduler(app.settings, app.sessions)
    stack.append(SUPPORT, [mail(subject="Database is slow", sender=CUSTOMER)])
    run_once(app)
    T0 = _opened_at(app)
    assert len(stack.wait_for("tier2@example.test", 1)) == 1  # the referral

    assert _step(app, clock, sched, T0 + timedelta(seconds=2)) == [(1, "accept-reminder",
                                                                    False)]
    assert _step(app, clock, sched, T0 + timedelta(seconds=4)) == [(1, "accept-missed",
                                                                    False)]
    for sec in (5, 10, 60):
        assert _step(app, clock, sched, T0 + timedelta(seconds=sec)) == []

    tier2 = _subjects(stack, "tier2@example.test")
    assert len(tier2) == 2 and tier2[1].startswith("Escalation:")  # referral, reminder
    backup = stack.wait_for("robot@example.test", 1)
    assert len(backup) == 1  # the referral to the fallback
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None and t.owner_group == "backup" and t.status == "referred"
        owners = [e.data.get("owner_group") for e in s.scalars(
            select(TicketEvent).where(TicketEvent.kind == "owner-changed")
            .order_by(TicketEvent.id))]
        assert owners == ["tier2", "backup"] or owners == ["backup"]
    customer = _subjects(stack, CUSTOMER)
    assert any("Re:" in s for s in customer)
    assert sum(b"escalated" in m for m in stack.messages(CUSTOMER)) == 1


def test_daemon_killed_between_steps_fires_each_step_once_after_restart(
        stack: MailStack, sqlite_url: str, tmp_path: Path) -> None:
    """A real `mailflow run`, real seconds: SIGKILL after the first step, restart."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from email import message_from_bytes

    from mailflow.mailstack import PASSWORD
    from mailflow.store.db import make_engine

    rules = _rules(tmp_path)
    (rules / "sla.yaml").write_text(SLA.replace("first_response: 4s", "first_response: 12s"))
    cfg = tmp_path / "mailflow.yaml"
    # A short lease: mail the killed daemon had claimed is sent again soon after.
    cfg.write_text(stack.settings_yaml(sqlite_url, f"rules_dir: {rules}\n"
                                       "outbox:\n  lease: 2s\n  retry_initial: 1s\n")
                   .replace("security: none\n", "security: none\n  poll_interval: 1s\n", 1))
    env = dict(os.environ, MAILFLOW_IMAP_PASSWORD=PASSWORD)
    exe = [sys.executable, "-m", "mailflow", "--config", str(cfg)]
    subprocess.run([*exe, "db", "upgrade"], check=True, env=env, capture_output=True)
    engine = make_engine(sqlite_url)

    def fired() -> list[str]:
        with engine.connect() as c:
            return [r[0] for r in c.exec_driver_sql("SELECT step FROM escalation_steps")]

    def start() -> subprocess.Popen[bytes]:
        log = open(tmp_path / "daemon.log", "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen([*exe, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)

    proc = start()
    try:
        time.sleep(1.5)
        stack.append(SUPPORT, [mail(subject="Printer broken", sender=CUSTOMER)])
        deadline = time.monotonic() + 30
        while fired() != ["remind"]:
            assert time.monotonic() < deadline, f"no first step: {fired()}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc = start()
        deadline = time.monotonic() + 40
        while len(fired()) < 3:
            assert time.monotonic() < deadline, f"steps after restart: {fired()}"
            time.sleep(0.2)
        time.sleep(3)  # anything fired twice would show by now
        stack.wait_for(CUSTOMER, 2, timeout=20)
        assert sorted(fired()) == ["manager", "missed", "remind"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()

    def ids(user: str) -> list[str]:
        return [str(message_from_bytes(m)["Message-ID"]) for m in stack.messages(user)]

    # Counted in the mailboxes by Message-ID: each mail once (a SIGKILL right after an
    # SMTP 250 may deliver one mail again, with the same Message-ID: docs/design.md).
    assert len(set(ids("other@example.test"))) == 2  # reminder, missed
    assert len(set(ids("robot@example.test"))) == 1  # management
    assert len(set(ids(CUSTOMER))) == 2  # acknowledgment, escalated
    text = (tmp_path / "daemon.log").read_text()
    assert text.count("escalation: ticket 1 step remind") == 1
