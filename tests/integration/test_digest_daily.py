"""The daemon's digest: once a day at the configured time, also after downtime, never
twice after a restart (run --once with a controlled clock, over Dovecot + SMTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailflow.clock import FrozenClock
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from tests.conftest import SUPPORT
from tests.mails import mail

MANAGER = "other@example.test"


def test_digest_goes_out_once_a_day_also_after_downtime(stack: MailStack, db_url: str,
                                                        make_app) -> None:
    day1 = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    clock = FrozenClock(day1)
    digest = {"at": "07:00", "recipients": [MANAGER]}
    app = make_app(stack, db_url, clock, digest=digest, timezone="UTC")
    stack.append(SUPPORT, [mail(subject="Printer broken", sender="a@customers.test")])
    run_once(app)  # 08:00: yesterday's digest is due (the daemon was not running at 07:00)
    assert len(stack.wait_for(MANAGER, 1)) == 1
    clock.set(day1 + timedelta(hours=3))
    run_once(app)
    # A restart (a new app on the same database) sends nothing again.
    again = make_app(stack, db_url, clock, digest=digest, timezone="UTC")
    run_once(again)
    clock.set(day1 + timedelta(hours=22, minutes=59))  # 06:59 the next day
    run_once(again)
    assert len(stack.messages(MANAGER)) == 1
    clock.set(day1 + timedelta(hours=23))  # 07:00: today's digest
    run_once(again)
    got = stack.wait_for(MANAGER, 2)
    assert len(got) == 2
    subjects = [m.split(b"Subject:")[1].split(b"\r\n")[0] for m in got]
    assert subjects[0] != subjects[1]  # two different days
