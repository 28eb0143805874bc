"""The second half of ``mailflow demo``: a referral, the tier group's reply with mail
commands, an escalation nobody answered in time, and the morning digest.

Everything goes through the same code as production: mail into the INBOX, ``run
--once``, the scheduler's tick, the outbox. The escalation uses the scheduler with a
clock two hours ahead ("two hours later, nobody has answered Ann"), since a demo cannot
wait for a service level to expire.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from typing import Any

import click

from mailflow.clock import FrozenClock
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack

# Who takes part beyond the customers: the tier group's mailbox, one of its engineers,
# the front line's lead and service management (rules/groups.yaml, escalation.yaml).
TIER2 = "tier2@example.test"
ENGINEER = "tom.engineer@example.test"
LEAD = "helpdesk-lead@example.test"
MANAGER = "service-manager@example.test"
VENDOR = "support@acme.example"
STAFF = [TIER2, ENGINEER, LEAD, MANAGER, "tina.lead@example.test", VENDOR,
         "escalations@acme.example"]


def _parsed(raw: bytes) -> EmailMessage:
    m = BytesParser(policy=default_policy).parsebytes(raw)
    assert isinstance(m, EmailMessage)
    return m


def _inbox(stack: MailStack, user: str, seen: int) -> list[EmailMessage]:
    return [_parsed(r) for r in stack.messages(user)[seen:]]


def _show(stack: MailStack, users: list[str], before: dict[str, int]) -> None:
    for u in users:
        for m in _inbox(stack, u, before.get(u, 0)):
            click.echo(f"   {u}: {str(m['Subject']).strip()}")
        before[u] = len(stack.messages(u))


def referral_and_tier_reply(app: Any, stack: MailStack, seen: dict[str, int]) -> None:
    """A mail with a log file goes to tier 2 by rule; tier 2 accepts with an ETA."""
    click.echo("\n== Dave sends a crash log: the rules refer the ticket to tier 2")
    m = EmailMessage()
    m["From"] = "Dave <dave@customer.test>"
    m["To"] = "Support <support@example.test>"
    m["Subject"] = "Backup job crashes every night"
    m["Date"] = format_datetime(datetime.now(UTC))
    m["Message-ID"] = make_msgid(domain="customer.test")
    m.set_content("Hello,\n\nthe nightly backup crashes, the log is attached.\n\nDave\n")
    m.add_attachment(b"2026-11-24 02:00:01 backup: segfault in chunk writer\n",
                     maintype="text", subtype="plain", filename="backup.log")
    stack.append("support@example.test", [m.as_bytes()])
    res = run_once(app)
    click.echo(f"   mailflow run --once: {dict(res.outcomes)}, sent {len(res.delivery.sent)}")
    _show(stack, [TIER2, "dave@customer.test", VENDOR, MANAGER], seen)

    referral = _parsed(stack.messages(TIER2)[-1])
    click.echo(f"\n== Tom of tier 2 answers the referral from his mail client "
               f"(To: {str(referral['Reply-To']).split('@')[0]}@...)")
    reply = EmailMessage()
    reply["From"] = f"Tom Engineer <{ENGINEER}>"
    reply["To"] = str(referral["Reply-To"])
    reply["Subject"] = f"RE: {referral['Subject']}"
    reply["In-Reply-To"] = str(referral["Message-ID"])
    reply["References"] = str(referral["Message-ID"])
    reply["Message-ID"] = make_msgid(domain="example.test")
    reply["Date"] = format_datetime(datetime.now(UTC))
    reply.set_content("#accept\n#eta 4h\n\nWe found the cause in the chunk writer and are "
                      "testing a fix.\n\nTom\n\n-----Original Message-----\n> Hello, ...\n")
    stack.append("support@example.test", [reply.as_bytes()])
    res = run_once(app)
    click.echo(f"   mailflow run --once: {dict(res.outcomes)}, sent {len(res.delivery.sent)} "
               "(the customer hears from us, never from tier 2)")
    _show(stack, [ENGINEER, "dave@customer.test"], seen)


def escalation(app: Any, stack: MailStack, seen: dict[str, int]) -> None:
    """Two hours pass and nobody has answered Ann's severity 1 outage."""
    later = datetime.now(UTC) + timedelta(hours=2)
    click.echo(f"\n== two hours later ({later:%H:%M} UTC): nobody has answered Ann's outage")
    fired = []
    while True:
        res = app.scheduler.tick(later)
        fired += res.fired
        if res.looked < 1000:
            break
    # The outbox runs on the same (simulated) time: the escalation mail is due "now".
    real = app.sender.clock
    app.sender.clock = FrozenClock(later)
    try:
        asyncio.run(app.sender.deliver_due())
    finally:
        app.sender.clock = real
    ref = app.settings.ticket_prefix
    for tid, step, late in fired:
        click.echo(f"   escalation step {step} fired for {ref}-{tid}" + (" (late)" if late
                                                                       else ""))
    _show(stack, [LEAD, MANAGER, VENDOR, TIER2, "ann@customer.test", "carol@shop.test"],
          seen)


def digest(app: Any) -> None:
    """What management reads the next morning (today's figures, printed)."""
    from mailflow.compose import Composer
    from mailflow.digest.send import TEMPLATE, digest_context

    now = datetime.now(UTC) + timedelta(hours=2)
    day = now.astimezone(app.settings.tz).date()
    subject, text, _html = Composer(app.settings.templates_path).render(
        TEMPLATE, digest_context(app.sessions, app.settings, day, now))
    click.echo(f"\n== the daily digest for management ({subject})")
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines[:28]:
        click.echo(f"   {line}")
    if len(lines) > 28:
        click.echo(f"   ... ({len(lines) - 28} more lines: mailflow digest --print)")
