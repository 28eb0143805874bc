"""Several mailboxes (``mailboxes:``) against real Dovecot and SMTP, on SQLite and
PostgreSQL: each account is watched with its own checkpoint, its tickets are answered
from its own address under its own prefix (or the shared one), its defaults classify
what no rule decides, a reply comes back to the right ticket, and every later mail of a
ticket (the CLI's, too) goes out from the ticket's desk. ``check --connect`` logs in to
each account."""

from __future__ import annotations

import email
import io
import json
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from mailflow import export
from mailflow.accounts import desk_prefixes
from mailflow.cli import main
from mailflow.config import ConfigError
from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.store.models import MailboxCheckpoint, Ticket
from tests.conftest import BILLING, CUSTOMER, SUPPORT, TIER2
from tests.mails import mail, reply_to


def _billing(stack: MailStack, **over: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "billing", "support_address": BILLING, "ticket_prefix": "BIL",
        "imap": {"host": "127.0.0.1", "port": stack.imap_port, "security": "none",
                 "username": BILLING, "password_env": "MAILFLOW_IMAP_PASSWORD",
                 "poll_interval": "1s", "backlog": "acknowledge"},
        "defaults": {"category": "administrative", "severity": 2}}
    entry.update(over)
    return entry


def _parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _by_subject(raws: list[bytes]) -> dict[str, EmailMessage]:
    return {str(m["Subject"]): m for m in map(_parsed, raws)}


def _tickets(app: Any) -> list[Ticket]:
    with app.sessions() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.id)))


def test_two_mailboxes_each_answer_from_their_own_address(stack: MailStack, db_url: str,
                                                          make_app) -> None:
    app = make_app(stack, db_url, mailboxes=[_billing(stack)])
    stack.append(SUPPORT, [mail(subject="Printer broken")])
    stack.append(BILLING, [mail(subject="Invoice 2211 twice", to=BILLING)])
    res = run_once(app)
    assert res.fetched == 2

    by_subject = {t.subject: t for t in _tickets(app)}
    sup, bil = by_subject["Printer broken"], by_subject["Invoice 2211 twice"]
    assert (sup.desk, bil.desk) == (None, "billing")
    # The billing desk's defaults where the shipped rules decide nothing.
    assert (bil.category, bil.severity) == ("administrative", 2)
    assert sup.category == "technical"

    acks = _by_subject(stack.wait_for(CUSTOMER, 2))
    a_sup = next(m for s, m in acks.items() if f"[SUP-{sup.id}]" in s)
    a_bil = next(m for s, m in acks.items() if f"[BIL-{bil.id}]" in s)
    assert BILLING in str(a_bil["From"]) and SUPPORT not in str(a_bil["From"])
    assert str(a_bil["Reply-To"]).startswith(f"billing+{bil.id}.")
    assert str(a_bil["Reply-To"]).endswith("@example.test")
    assert SUPPORT in str(a_sup["From"])
    assert str(a_sup["Reply-To"]).startswith(f"support+{sup.id}.")
    assert f"BIL-{bil.id}" in a_bil.get_body(("plain",)).get_content()

    out = io.StringIO()
    export.export_jsonl(app.sessions, out, export.EVERYTHING, desk_prefixes(app.settings))
    lines = out.getvalue().splitlines()
    exported = {t["id"]: (t["ref"], t["desk"]) for t in map(json.loads, lines)}
    assert exported == {sup.id: (f"SUP-{sup.id}", None), bil.id: (f"BIL-{bil.id}", "billing")}

    with app.sessions() as s:
        keys = sorted(s.scalars(select(MailboxCheckpoint.mailbox)))
    assert keys == [f"billing:{BILLING}/INBOX", f"{SUPPORT}/INBOX"]

    # The customer answers the billing acknowledgment: it lands in billing's INBOX and
    # joins the billing ticket; nothing new is opened, nothing acknowledged again.
    raw_bil = next(r for r in stack.messages(CUSTOMER)
                   if f"[BIL-{bil.id}]" in str(_parsed(r)["Subject"]))
    stack.append(BILLING, [reply_to(raw_bil, CUSTOMER, "Any news?", to=str(a_bil["Reply-To"]))])
    assert run_once(app).fetched == 1
    assert len(_tickets(app)) == 2
    with app.sessions() as s:
        assert s.get(Ticket, bil.id).last_customer_at is not None  # type: ignore[union-attr]


def test_the_desk_cli_mails_from_the_tickets_desk(stack: MailStack, sqlite_url: str,
                                                  make_app, tmp_path: Path) -> None:
    app = make_app(stack, sqlite_url, mailboxes=[_billing(stack)])
    stack.append(BILLING, [mail(subject="Refund please", to=BILLING)])
    run_once(app)
    before = len(stack.wait_for(CUSTOMER, 1))
    (bil,) = _tickets(app)
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({
        "database": sqlite_url, "support_address": SUPPORT,
        "rules_dir": str(app.settings.rules_path),
        "mailboxes": [_billing(stack)]}))
    runner = CliRunner()
    shown = runner.invoke(main, ["--config", str(cfg), "tickets", "show", f"BIL-{bil.id}",
                                 "--json"])
    assert shown.exit_code == 0, shown.output
    assert f'"ref": "BIL-{bil.id}"' in shown.output
    done = runner.invoke(main, ["--config", str(cfg), "tickets", "refer", f"BIL-{bil.id}",
                                "tier2", "--reason", "ledger export broken"])
    assert done.exit_code == 0, done.output
    assert done.output == f"BIL-{bil.id} referred to tier2\n"
    run_once(app)
    (referral,) = map(_parsed, stack.wait_for(TIER2, 1))
    assert f"[BIL-{bil.id}]" in str(referral["Subject"]) and BILLING in str(referral["From"])
    assert str(referral["Reply-To"]).startswith(f"billing+{bil.id}.")
    (notice,) = map(_parsed, stack.wait_for(CUSTOMER, before + 1)[before:])
    assert f"[BIL-{bil.id}]" in str(notice["Subject"]) and BILLING in str(notice["From"])

    # tier2 answers the referral: to the billing desk's reply address, so it arrives in
    # billing's INBOX; its commands apply, and the customer hears from billing@.
    raw_referral = stack.messages(TIER2)[-1]
    stack.append(BILLING, [reply_to(raw_referral, "tom.engineer@example.test",
                                    "#accept\n#eta 4h\n\nThe export is fixed tomorrow.",
                                    to=str(referral["Reply-To"]))])
    run_once(app)
    (taken,) = map(_parsed, stack.wait_for(CUSTOMER, before + 2)[before + 1:])
    assert BILLING in str(taken["From"]) and f"[BIL-{bil.id}]" in str(taken["Subject"])
    assert f"has taken on your request BIL-{bil.id}" in taken.get_body(
        ("plain",)).get_content()
    bad = runner.invoke(main, ["--config", str(cfg), "tickets", "show", "XYZ-1"])
    assert bad.exit_code == 2
    assert "(expected SUP-N or BIL-N)" in bad.output


def test_rules_replay_uses_each_desks_defaults_and_prefix(stack: MailStack, sqlite_url: str,
                                                         make_app, tmp_path: Path) -> None:
    """A billing ticket that no rule classifies has the billing desk's defaults; a replay
    with the same rules must say so (no change), naming it BIL-N, not SUP-N."""
    app = make_app(stack, sqlite_url, mailboxes=[_billing(stack)])
    stack.append(BILLING, [mail(subject="Hello there", body="Just a question.", to=BILLING)])
    run_once(app)
    (bil,) = _tickets(app)
    assert (bil.category, bil.severity) == ("administrative", 2)  # the desk's defaults
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({
        "database": sqlite_url, "support_address": SUPPORT,
        "rules_dir": str(app.settings.rules_path), "mailboxes": [_billing(stack)]}))
    res = CliRunner().invoke(main, ["--config", str(cfg), "rules", "replay", "--since",
                                    "3650d", "--json"])
    assert res.exit_code == 0, res.output
    (item,) = json.loads(res.output)["items"]
    assert item["ticket"] == f"BIL-{bil.id}"
    assert item["current"]["category"] == "administrative" and item["changes"] == []


def test_a_shared_prefix_numbers_both_desks_in_one_sequence(stack: MailStack,
                                                            sqlite_url: str, make_app) -> None:
    app = make_app(stack, sqlite_url, mailboxes=[_billing(stack, ticket_prefix=None)])
    stack.append(SUPPORT, [mail(subject="First")])
    stack.append(BILLING, [mail(subject="Second", to=BILLING)])
    run_once(app)
    subjects = sorted(str(m["Subject"]) for m in map(_parsed, stack.wait_for(CUSTOMER, 2)))
    tags = sorted(m.group() for s in subjects if (m := re.search(r"\[[A-Z]+-\d+\]", s)))
    assert sorted(set(tags)) == ["[SUP-1]", "[SUP-2]"]
    assert {t.desk for t in _tickets(app)} == {None, "billing"}


def test_check_connect_logs_in_to_every_mailbox(stack: MailStack, sqlite_url: str,
                                                tmp_path: Path, monkeypatch) -> None:
    from mailflow.store.db import make_engine, upgrade

    engine = make_engine(sqlite_url)
    upgrade(engine)
    engine.dispose()
    cfg = tmp_path / "mailflow.yaml"

    def write(entry: dict[str, Any]) -> None:
        cfg.write_text(stack.settings_yaml(sqlite_url, yaml.safe_dump(
            {"rules_dir": str(Path(__file__).parents[2] / "rules"), "mailboxes": [entry]})))

    write(_billing(stack))
    res = CliRunner().invoke(main, ["--config", str(cfg), "check", "--connect"])
    assert res.exit_code == 0, res.output
    assert f"ok    imap login: 127.0.0.1:{stack.imap_port} (none) as {SUPPORT}" in res.output
    assert f"ok    imap billing login: 127.0.0.1:{stack.imap_port} (none) as {BILLING}" \
        in res.output
    assert "ok    imap billing folder INBOX:" in res.output
    assert "mailbox billing: billing@example.test, tickets BIL-N" in res.output

    # A wrong password on the billing account fails that account only, by name.
    write(_billing(stack, imap={**_billing(stack)["imap"], "password_env": "WRONG_PW"}))
    monkeypatch.setenv("WRONG_PW", "nope")
    res = CliRunner().invoke(main, ["--config", str(cfg), "check", "--connect"])
    assert res.exit_code == 1
    assert "ok    imap login:" in res.output
    assert f"FAIL  imap billing login: IMAP 127.0.0.1:{stack.imap_port}: login as " \
        f"{BILLING} refused" in res.output


@pytest.mark.parametrize(("entry", "problem"), [
    ({"name": "main"}, 'the name "main" is used twice'),
    ({"support_address": SUPPORT}, "support@example.test is the support address of two"),
    ({"imap": {"username": SUPPORT, "port": 1}}, None),
    ({"ticket_prefix": "bil"}, "mailboxes.0.ticket_prefix"),
])
def test_mailbox_config_errors_are_one_line_each(entry: dict[str, Any], problem: str | None,
                                                 tmp_path: Path) -> None:
    from mailflow.config import validate

    data = {"support_address": SUPPORT,
            "imap": {"username": SUPPORT, "port": 1},
            "mailboxes": [{"name": "billing", "support_address": BILLING,
                           "imap": {"username": BILLING, "port": 2}, **entry}]}
    if problem is None:  # the same folder of the same account twice
        problem = f"folder INBOX of {SUPPORT}@127.0.0.1 is watched twice"
    with pytest.raises(ConfigError) as err:
        validate(data, base_dir=tmp_path)
    assert any(problem in p for p in err.value.problems), err.value.problems
