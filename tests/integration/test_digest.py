"""The daily digest over a real day of traffic: Dovecot + SMTP, a frozen clock, SQLite
and PostgreSQL. The manager (other@example.test) gets exactly one digest of the day
whose numbers are the ones worked out below, and queueing it again sends nothing.

The day, 2026-11-24 (UTC), all mail from customer@example.test:
08:00 three new tickets: 1 VPN, 2 laptop, 3 password (acknowledged: not a response)
09:00 we answer 1 and 3 (first response 1h each)
09:30 ticket 2 is referred to tier2; 10:00 tier2 accepts it with an ETA
10:00 the customer writes again on 1; 11:00 we answer (reply speed 1h)
11:30 ticket 2 escalates (3.5h old: early)
12:00 tickets 1 and 3 resolved (4h each)
13:00 the customer writes on 1 again: reopened; 16:00 resolved again (3h)
14:00 the customer rates ticket 3 with a 5 by replying to it
Service levels: as the SLA clocks record them, plus a breach of 2's resolution at 15:00.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
    inspect,
    select,
    text,
)

from mailflow.app import App
from mailflow.clock import FrozenClock
from mailflow.daemon import run_once
from mailflow.digest import queries as q
from mailflow.digest.daily import daily_counts
from mailflow.digest.metrics import counts
from mailflow.digest.records import day_window
from mailflow.digest.send import last_digest_day, queue_digest
from mailflow.mailstack import MailStack
from mailflow.store.models import OutboxRow, Ticket, TicketEvent
from mailflow.tickets import EventKind, OutboxKind, Status
from mailflow.tickets.apply import ApplyContext, apply
from mailflow.tickets.effects import (
    AcceptReferral,
    Effect,
    MailRequest,
    Note,
    QueueMail,
    Refer,
    SetEta,
    SetOwner,
    SetStatus,
)
from tests.conftest import CUSTOMER, SUPPORT
from tests.mails import mail, reply_to

MANAGER = "other@example.test"
DAY = date(2026, 11, 24)


def at(hour: int, minute: int = 0, day: int = 24) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def _clocks_table(app: App) -> None:
    """``ticket_clocks`` in the shape the SLA clocks work creates, until it lands."""
    if inspect(app.engine).has_table("ticket_clocks"):
        return
    md = MetaData()
    Table("ticket_clocks", md, Column("ticket_id", Integer, primary_key=True),
          Column("kind", String(24), primary_key=True),
          Column("episode", Integer, primary_key=True), Column("policy", String(100)),
          Column("severity", Integer), Column("owner_group", String(100)),
          Column("started_at", DateTime), Column("due_at", DateTime),
          Column("stopped_at", DateTime), Column("state", String(16)),
          Column("paused_seconds", Integer, nullable=False))
    md.create_all(app.engine)


def _clock(app: App, ticket: int, kind: str, severity: int, owner: str | None,
           started: datetime, due: datetime, stopped: datetime | None, state: str) -> None:
    naive = {k: v.replace(tzinfo=None) if v else None
             for k, v in (("s", started), ("d", due), ("x", stopped))}
    with app.sessions.begin() as s:
        s.execute(text(
            "INSERT INTO ticket_clocks (ticket_id, kind, episode, policy, severity, "
            "owner_group, started_at, due_at, stopped_at, state, paused_seconds) VALUES "
            "(:t, :k, 9, 'test', :sev, :o, :s, :d, :x, :st, 0)"),
            {"t": ticket, "k": kind, "sev": severity, "o": owner, "st": state, **naive})


class Day:
    """Drives the day: mail in through Dovecot at given times, effects through apply."""

    def __init__(self, stack: MailStack, app: App, clock: FrozenClock):
        self.stack, self.app, self.clock = stack, app, clock

    def mail_in(self, when: datetime, *raws: bytes) -> None:
        self.clock.set(when)
        with self.stack.imap(SUPPORT) as c:
            for raw in raws:
                c.append("INBOX", raw, msg_time=when)
        run_once(self.app)

    def do(self, when: datetime, *effects: Effect) -> None:
        self.clock.set(when)
        st = self.app.settings
        with self.app.sessions.begin() as s:
            apply(s, effects, ApplyContext(when, st.support_address, st.domain,
                                           st.ticket_prefix))
        run_once(self.app)

    def answer(self, when: datetime, ticket: int, text: str) -> None:
        ctx: dict[str, Any] = {
            "subject": "your request", "customer": {"name": "", "address": CUSTOMER},
            "update": {"text": text}, "eta": None, "next_update": None,
            "support_address": SUPPORT}
        self.do(when, QueueMail(MailRequest(
            kind=OutboxKind.STATUS_UPDATE, template="status-update", recipient=CUSTOMER,
            ticket=ticket, context=ctx)))

    def resolve(self, when: datetime, ticket: int) -> None:
        self.do(when, SetStatus(ticket, Status.RESOLVED, "solved", "agent@example.test"))


def _text_part(raw: bytes) -> str:
    msg = message_from_bytes(raw, policy=default)
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_one_digest_with_the_days_numbers(stack: MailStack, db_url: str, make_app) -> None:
    clock = FrozenClock(at(7))
    app = make_app(stack, db_url, clock, digest={"recipients": [MANAGER], "at": "07:00"})
    _clocks_table(app)
    d = Day(stack, app, clock)
    d.mail_in(at(8), mail(subject="VPN broken"), mail(subject="Laptop slow"),
              mail(subject="Password reset"))
    acks = stack.wait_for(CUSTOMER, 3)
    with app.sessions() as s:
        ids = {t.subject: t.id for t in s.scalars(select(Ticket))}
    vpn, storage, invoice = ids["VPN broken"], ids["Laptop slow"], \
        ids["Password reset"]
    ack_of = {message_from_bytes(a, policy=default)["Subject"]: a for a in acks}

    def ack(subject: str) -> bytes:
        return next(v for k, v in ack_of.items() if subject in str(k))

    d.answer(at(9), vpn, "Please restart the client.")
    d.answer(at(9), invoice, "Looking into it.")
    token = secrets.token_hex(8)
    d.do(at(9, 30), Refer(storage, "tier2", token, "needs the storage team"),
         SetOwner(storage, "tier2", "referred"), SetStatus(storage, Status.REFERRED, "referred"))
    d.do(at(10), AcceptReferral(storage, token, "tier2", "tina@example.test"),
         SetEta(storage, token, "tier2", "tina@example.test", eta=at(12, day=26)))
    d.mail_in(at(10), reply_to(ack("VPN broken"), CUSTOMER, "Restarted, still broken."))
    d.answer(at(11), vpn, "Try the new profile.")
    d.do(at(11, 30), Note(storage, EventKind("escalated"), "escalation step remind-owner",
                          data={"step": "first-response-reminder", "chain": "technical",
                                "clock": "first_response", "episode": 1, "late": False,
                                "actions": ["remind-owner"], "age_seconds": 12600,
                                "reason": "first response due"}))
    d.resolve(at(12), vpn)
    d.resolve(at(12), invoice)
    d.mail_in(at(13), reply_to(ack("VPN broken"), CUSTOMER, "It broke again."))
    d.mail_in(at(14), reply_to(ack("Password reset"), CUSTOMER, "5\n\nThanks, all good."))
    d.resolve(at(16), vpn)
    # The SLA clocks (when they run) record what was met; a breach is added by hand.
    _clock(app, storage, "resolution", 3, "tier2", at(8), at(15), None, "breached")
    with app.sessions() as s:
        met = s.scalar(text("SELECT count(*) FROM ticket_clocks WHERE state = 'met' AND "
                            "stopped_at >= :a AND stopped_at < :b"),
                       {"a": at(0).replace(tzinfo=None),
                        "b": at(0, day=25).replace(tzinfo=None)})
        # The escalation scheduler (when it runs) adds its own steps on ticket 2.
        ages = [int(e.data.get("age_seconds", 0)) for e in s.scalars(
            select(TicketEvent).where(TicketEvent.kind == "escalated"))]
        assert all(e.ticket_id == storage for e in s.scalars(
            select(TicketEvent).where(TicketEvent.kind == "escalated")))
    n_early = sum(a < 4 * 3600 for a in ages)

    with app.sessions() as s:
        assert s.get(Ticket, vpn).reopen_count == 1  # type: ignore[union-attr]
        # The SQL counts, day by day, are the pure counts of the same histories.
        fcr, early = timedelta(days=7), timedelta(hours=4)
        tz = app.settings.tz
        daily = daily_counts(s, DAY - timedelta(days=2), DAY + timedelta(days=1), tz, fcr,
                             early)
        everything = q.records(s, list(s.scalars(select(Ticket.id))))
        for d, sql in daily.items():
            w = day_window(d, tz)
            assert sql == counts(everything, w, fcr, early, q.clocks(s, w)), d
        sql = daily[DAY]
    assert (sql.opened, sql.customer_messages, sql.responses, sql.handled, sql.resolved) == (
        3, 5, 3, 2, 2)
    assert (sql.first_resolved, sql.first_contact, sql.reopened, sql.escalated,
            sql.ratings, sql.rating_sum) == (2, 1, 1, 1, 1, 5)
    assert (sql.escalations, sql.early_escalations) == (len(ages), n_early) and n_early >= 1
    assert (sql.clocks_met, sql.clocks_breached) == (met, 1)

    # The next morning, after 07:00: queued once, however often it is asked.
    now = at(7, 30, day=25)
    clock.set(now)
    assert queue_digest(app.sessions, app.settings, DAY, now) == 1
    assert queue_digest(app.sessions, app.settings, DAY, now) == 0
    assert last_digest_day(app.sessions) == DAY
    run_once(app)
    assert queue_digest(app.sessions, app.settings, DAY, now + timedelta(hours=1)) == 0
    run_once(app)
    # The daemon's own scheduler sent the 23rd's (an empty day) during the day's runs.
    inbox = stack.wait_for(MANAGER, 2)
    subjects = sorted(str(message_from_bytes(m, policy=default)["Subject"]) for m in inbox)
    assert subjects == ["Support digest 2026-11-23", "Support digest 2026-11-24"]
    [got] = [m for m in inbox if b"Support digest 2026-11-24" in m]
    msg = message_from_bytes(got, policy=default)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == "Support digest 2026-11-24"
    html = msg.get_body(("html",))
    assert html is not None and "<script" not in str(html.get_content())
    body = _text_part(got)
    for line in (
        "Tickets opened 3, customer messages 5,",
        "handled 2, resolved 2, responses sent 3.",
        "Open backlog: 1 ticket(s)",
        "2 first response(s): median 1h 00m",
        "Reply speed on follow-ups: 1 reply(ies), median 1h 00m",
        # 1: 08-12 and 13-16; 3: 08-12.
        "3 resolution(s): mean 3h 40m, median 4h 00m",
        "First-contact resolution 50.0 % (1 of 2; not reopened within 7 days)",
        "Reopen rate 50.0 % (1 reopen(s) of 1 ticket(s))",
        f"{len(ages)} escalation step(s) on 1 ticket(s): ratio 33.3 % - ABOVE 2.0 %.",
        f"Early (within 4 hours): {n_early}.",
        "first response due (1)",
        "tier2: 1 referral(s) received; accepted in time 1 of 1;",
        f"Met {met}, breached 1 (",
        f"BREACH SUP-{storage}: resolution, severity 3, tier2, due 2026-11-24 15:00",
        "1 rating(s), average 5 of 5.",
    ):
        assert line in body, line
    with app.sessions() as s:
        n = s.scalar(select(func.count()).select_from(OutboxRow).where(
            OutboxRow.kind == "digest", OutboxRow.dedupe_key.like("digest:2026-11-24:%")))
    assert n == 1


def test_cli_prints_and_refuses_what_it_cannot_do(sqlite_url: str, make_app,
                                                  tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from mailflow.cli import main

    make_app(None, sqlite_url)  # a migrated, empty database
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({"database": sqlite_url, "support_address": SUPPORT,
                                   "rules_dir": str(Path(__file__).parents[2] / "rules")}))
    run = CliRunner().invoke
    res = run(main, ["--config", str(cfg), "digest", "--date", "2026-11-24"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("Subject: Support digest 2026-11-24")
    assert "Nothing needs your attention today." in res.output
    res = run(main, ["--config", str(cfg), "digest", "--date", "2026-11-24", "--format", "html"])
    assert res.exit_code == 0 and "<table" in res.output and "<script" not in res.output
    res = run(main, ["--config", str(cfg), "digest", "--send"])
    assert res.exit_code == 2 and "digest.recipients is empty" in res.output
    res = run(main, ["--config", str(cfg), "digest", "--date", "yesterday"])
    assert res.exit_code == 2 and "--date" in res.output
