"""``mailflow demo``: the main job, end to end, on a private mail stack on loopback.

Starts Dovecot and an SMTP server, puts example customer mail into the support INBOX,
runs one cycle on SQLite, shows the tickets opened and the mail the customers got,
then has one customer reply to the acknowledgment and runs again; then a referral to
tier 2 and its reply with mail commands, an escalation, and the digest
(:mod:`mailflow.demo_flow`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import click

from mailflow import config as config_mod
from mailflow import demo_flow, stackctl
from mailflow.app import build
from mailflow.daemon import run_once
from mailflow.mailstack import PASSWORD, MailStack
from mailflow.resources import default_rules_dir, default_templates_dir
from mailflow.store.db import make_engine, upgrade
from mailflow.store.models import Ticket

CUSTOMERS = ["ann@customer.test", "bob@bigcorp.example", "carol@shop.test",
             "ooo@customer.test", "dave@customer.test"]

EXAMPLES = [
    ("Ann Example <ann@customer.test>", "Website down for all users",
     "Hi,\n\nour web shop is down since 9:00, nobody can log in. All users are affected.\n\n"
     "Ann", {}),
    ("Bob Big <bob@bigcorp.example>", "Question about invoice 2026-117",
     "Hello,\n\nthe invoice 2026-117 lists 12 licences but we have 10. Could you check?\n\n"
     "Regards,\nBob", {}),
    ("Carol <carol@shop.test>", "Printer driver for the ACME SV-200",
     "Where do I find the driver for the ACME storevault SV-200 management console?\n", {}),
    ("Out of office <ooo@customer.test>", "Automatic reply: your newsletter",
     "I am out of the office until Monday.\n", {"Auto-Submitted": "auto-replied"}),
]


def _mail(sender: str, subject: str, body: str, headers: dict[str, str]) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "Support <support@example.test>"
    m["Subject"] = subject
    m["Date"] = format_datetime(datetime.now(UTC))
    m["Message-ID"] = make_msgid(domain="customer.test")
    for k, v in headers.items():
        m[k] = v
    m.set_content(body)
    return m.as_bytes()


def missing_extra() -> str | None:
    """What a plain ``pip install mailflow`` lacks for the demo, said before anything
    starts (the SMTP side of the mail stack is aiosmtpd, in the ``demo`` extra)."""
    try:
        import aiosmtpd.controller  # noqa: F401
    except ImportError:
        return ("mailflow demo needs aiosmtpd for its SMTP server, which is not installed: "
                "pip install 'mailflow[demo]'")
    return None


def run_demo(directory: Path, keep: bool = False) -> int:
    """Exit status 0, or 1/2 with one line said; a failure never leaves servers running,
    and ``keep`` leaves both (Dovecot and SMTP) running only after a full run."""
    problem = missing_extra()
    if problem:
        click.echo(f"mailflow: {problem}", err=True)
        return 2
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    db_path = directory / "mailflow.db"
    if stackctl.stop_all(directory):
        click.echo("== stopped the mail stack a previous `mailflow demo --keep` left running")
    db_path.unlink(missing_ok=True)
    click.echo("== starting a private mail stack (Dovecot + SMTP on loopback)")
    root = stackctl.stack_root(directory)
    # Empty mailboxes, as the database is new: a second demo in the same folder would
    # otherwise show the first one's mail beside its own.
    shutil.rmtree(root / "mail", ignore_errors=True)
    stack = MailStack.create(root, users=["support@example.test", *CUSTOMERS,
                                          *demo_flow.STAFF])
    try:
        stack.start()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        click.echo(f"mailflow: cannot start the demo mail stack: {_why(exc)}", err=True)
        stackctl.stop_all(directory)
        return 1
    kept = False
    try:
        cfg = directory / "mailflow.yaml"
        cfg.write_text(stack.settings_yaml(
            "sqlite:///mailflow.db",
            f"rules_dir: {default_rules_dir()}\ntemplates_dir: {default_templates_dir()}\n"))
        os.environ["MAILFLOW_IMAP_PASSWORD"] = PASSWORD
        settings = config_mod.load(cfg)
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        click.echo(f"   config {cfg}, database {db_path}")

        click.echo(f"\n== {len(EXAMPLES)} customer mails arrive in support@example.test's INBOX")
        seen: dict[str, int] = {}
        stack.append("support@example.test", [_mail(*e) for e in EXAMPLES])
        app = build(settings)
        try:
            res = run_once(app)
            click.echo(f"   mailflow run --once: fetched {res.fetched}, "
                       f"{dict(res.outcomes)}, sent {len(res.delivery.sent)} mail(s)")
            _show_tickets(app)
            click.echo("\n== what the customers received")
            for c in CUSTOMERS[:4]:
                got = stack.wait_for(c, 1, timeout=2 if c.startswith("ooo") else 10)
                seen[c] = len(got)
                if not got:
                    click.echo(f"   {c}: nothing (automatic mail gets no acknowledgment)")
                for raw in got:
                    m = BytesParser(policy=default_policy).parsebytes(raw)
                    click.echo(f"   {c}: {str(m['Subject']).strip()}  [Auto-Submitted: "
                               f"{m['Auto-Submitted']}]")
            ack = BytesParser(policy=default_policy).parsebytes(
                stack.messages("carol@shop.test")[0])
            click.echo("\n== Carol replies to the acknowledgment: severity rises")
            reply = EmailMessage()
            reply["From"] = "Carol <carol@shop.test>"
            reply["To"] = str(ack["Reply-To"])
            reply["Subject"] = f"Re: {ack['Subject']}"
            reply["In-Reply-To"] = str(ack["Message-ID"])
            reply["References"] = str(ack["Message-ID"])
            reply["Message-ID"] = make_msgid(domain="customer.test")
            reply["Date"] = format_datetime(datetime.now(UTC))
            reply.set_content("Now the console is down for everyone in the company.\n\n"
                              "> thank you for contacting support...\n")
            stack.append("support@example.test", [reply.as_bytes()])
            res = run_once(app)
            click.echo(f"   mailflow run --once: fetched {res.fetched}, {dict(res.outcomes)}, "
                       f"sent {len(res.delivery.sent)} (a reply gets no second acknowledgment)")
            _show_tickets(app)
            seen["carol@shop.test"] = len(stack.messages("carol@shop.test"))
            demo_flow.referral_and_tier_reply(app, stack, seen)
            demo_flow.escalation(app, stack, seen)
            _show_tickets(app)
            demo_flow.digest(app)
        finally:
            app.close()
        click.echo(f"\nInspect: mailflow --config {cfg} tickets show SUP-3")
        if keep:
            stackctl.keep(stack)
            kept = True
            click.echo(f"mail stack left running: IMAP 127.0.0.1:{stack.imap_port}, SMTP "
                       f"127.0.0.1:{stack.smtp_port} (users' password: {PASSWORD}); "
                       f"stop both with: mailflow demo --stop {directory}")
    finally:
        if not kept:
            stack.stop()
            stackctl.stop_all(directory)  # and a stack folder under /tmp goes
    return 0


def stop_demo(directory: Path) -> int:
    """``mailflow demo --stop``: end what ``--keep`` left running in ``directory``."""
    if stackctl.stop_all(directory.resolve()):
        click.echo(f"stopped the demo mail stack of {directory}")
    else:
        click.echo(f"no demo mail stack running for {directory}")
    return 0


def _why(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        return f"{exc.cmd[0]} exited with status {exc.returncode}"
    return str(exc)


def _show_tickets(app: Any) -> None:
    from sqlalchemy import select

    click.echo("\n== tickets")
    with app.sessions() as s:
        for t in s.scalars(select(Ticket).order_by(Ticket.id)):
            click.echo(f"   {app.settings.ticket_prefix}-{t.id:<4} {t.status:<7} sev "
                       f"{t.severity} {t.category:<14} owner {t.owner_group:<12} "
                       f"{t.requester:<22} {t.subject}")
