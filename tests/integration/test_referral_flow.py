"""Referral to a tier group, as people live it, over real Dovecot + SMTP and both databases.

A customer writes; a rule refers the ticket to tier2; tier2 answers from its mail
client with commands on top; the customer hears from us only; tier2 resolves; the
front line and the customer are told; the customer rates. Forged replies change
nothing.
"""

from __future__ import annotations

import shutil
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.store.models import OutboxRow, Referral, Ticket, TicketEvent
from tests.conftest import CUSTOMER, SUPPORT, TIER2
from tests.mails import mail

RULES = Path(__file__).parents[2] / "rules"
LEAD = "helpdesk-lead@example.test"  # the front line's leader: no mailbox in the stack
TIER2_LEAD = "tina.lead@example.test"


def _rules(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    shutil.copytree(RULES, d)
    groups = (d / "groups.yaml").read_text()
    old = "members: [tom.engineer@example.test, tara.engineer@example.test]"
    assert old in groups
    (d / "groups.yaml").write_text(groups.replace(
        old, "members: [tom.engineer@example.test, tara.engineer@example.test, "
             f"{TIER2}]"))
    classify = (d / "classify.yaml").read_text()
    rule = ("rules:\n  - name: database\n    description: Database trouble goes to tier 2.\n"
            "    when:\n      subject: {words: [database]}\n    set:\n      owner: tier2\n\n")
    (d / "classify.yaml").write_text(classify.replace("rules:\n", rule, 1))
    return d


def _msg(raw: bytes) -> EmailMessage:
    m = message_from_bytes(raw, policy=default)
    assert isinstance(m, EmailMessage)
    return m


def _text(raw: bytes) -> str:
    part = _msg(raw).get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def _reply(to_mail: bytes, sender: str, top: str, *, subject_prefix: str = "RE: ",
           to: str | None = None) -> bytes:
    """A reply as Outlook writes it: answer on top, the original quoted below."""
    o = _msg(to_mail)
    quoted = "\n".join(f"> {line}" for line in _text(to_mail).splitlines())
    body = (f"{top}\n\n-----Original Message-----\nFrom: {o['From']}\n"
            f"Sent: Monday, January 5, 2026 9:00 AM\nSubject: {o['Subject']}\n\n{quoted}\n")
    mid = str(o["Message-ID"])
    return mail(sender=sender, to=to or str(o.get("Reply-To") or o["From"]),
                subject=f"{subject_prefix}{o['Subject']}", body=body,
                headers={"In-Reply-To": mid, "References": mid})


def _cycle(app: Any) -> None:
    run_once(app)


def _state(app: Any) -> tuple[Ticket, list[TicketEvent], list[OutboxRow], list[Referral]]:
    with app.sessions() as s:
        t = s.get(Ticket, 1)
        assert t is not None
        s.expunge(t)
        events = list(s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == 1)
                                .order_by(TicketEvent.id)))
        rows = list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))
        refs = list(s.scalars(select(Referral).order_by(Referral.id)))
        s.expunge_all()
    return t, events, rows, refs


def test_referral_lived_end_to_end(stack: MailStack, db_url: str, make_app: Any,
                                   tmp_path: Path) -> None:
    app = make_app(stack, db_url, rules_dir=str(_rules(tmp_path)))
    original = mail(subject="The database is very slow",
                    body="Hello,\n\nsince this morning every query takes a minute.\n\nAnn")
    stack.append(SUPPORT, [original])
    _cycle(app)

    # The rule referred it: tier2 holds the referral, carrying the referral's token.
    [referral] = stack.wait_for(TIER2, 1)
    t, events, rows, [ref] = _state(app)
    assert (t.status, t.owner_group) == ("referred", "tier2")
    assert ref.group == "tier2" and ref.token != t.reply_token and ref.ended_at is None
    r = _msg(referral)
    assert r["Reply-To"] == f"support+1.{ref.token}@example.test"
    assert f".{ref.token}." in r["Message-ID"]
    assert str(r["Subject"]).count("[SUP-1]") == 1
    body = _text(referral)
    assert "every query takes a minute" in body and "accept within" in body
    assert "rules database" in body
    # The customer's original, byte for byte, as message/rfc822.
    [att] = list(r.iter_attachments())
    assert att.get_content_type() == "message/rfc822"
    assert att.get_content()["Message-ID"] == _msg(original)["Message-ID"]
    # The customer: the acknowledgment and which team has it now.
    got = stack.wait_for(CUSTOMER, 2)
    assert len(got) == 2
    told = _text(got[1])
    assert "Second-line technical support" in told and "next update by" in told

    # tier2 answers from its mail client: commands on top, the referral quoted below.
    stack.append(SUPPORT, [_reply(referral, TIER2, "#accept\n#eta 4h\n\nWe can reproduce "
                                  "it and are adding an index.\n\nTom\nTier 2")])
    _cycle(app)
    got = stack.wait_for(CUSTOMER, 3)
    assert len(got) == 3
    accepted = _text(got[2])
    assert "has taken on your request SUP-1" in accepted
    assert "Expected resolution:" in accepted and "adding an index" in accepted
    assert "Original Message" not in accepted and "#eta" not in accepted
    assert _msg(got[2])["From"].addresses[0].addr_spec == SUPPORT
    assert str(_msg(got[2])["Subject"]) == "Re: The database is very slow [SUP-1]"
    [_, transcript] = stack.wait_for(TIER2, 2)
    assert "Applied:" in _text(transcript) and "#eta 4h" in _text(transcript)
    t, events, rows, [ref] = _state(app)
    assert ref.accepted_at is not None and ref.eta is not None
    assert not [r for r in rows if r.template == "tier-reminder"]

    # The customer answers the update; tier2 gets it, with the referral's token.
    stack.append(SUPPORT, [_reply(got[2], CUSTOMER, "It got worse: now it times out.",
                                  subject_prefix="Re: ")])
    _cycle(app)
    relayed = stack.wait_for(TIER2, 3)[2]
    assert "now it times out" in _text(relayed)
    assert [a.get_content_type() for a in _msg(relayed).iter_attachments()] == [
        "message/rfc822"]
    assert _msg(relayed)["Reply-To"] == f"support+1.{ref.token}@example.test"

    # tier2 resolves, answering the relayed mail.
    stack.append(SUPPORT, [_reply(relayed, TIER2, "#status resolved\n#cause missing index "
                                  "on orders.created\n\nThe index is in place; queries are "
                                  "fast again.")])
    _cycle(app)
    got = stack.wait_for(CUSTOMER, 4)
    resolved = _text(got[3])
    # One tag and one Re:, although tier2 answered "RE: Re: ... [SUP-1]".
    assert str(_msg(got[3])["Subject"]) == "Re: The database is very slow [SUP-1]"
    assert "has been resolved" in resolved and "queries are fast again" in resolved
    assert "just reply" in resolved and "number from 1" in resolved
    t, events, rows, _ = _state(app)
    assert t.status == "resolved"
    [front] = [r for r in rows if r.template == "frontline-resolution"]
    assert front.recipient == LEAD and "missing index" in str(front.context)

    # The customer rates 4: recorded, and the ticket stays resolved.
    stack.append(SUPPORT, [_reply(got[3], CUSTOMER, "4 thanks!", subject_prefix="Re: ")])
    _cycle(app)
    t, events, rows, _ = _state(app)
    assert t.status == "resolved" and t.reopen_count == 0
    [rating] = [e for e in events if e.data.get("what") == "rating"]
    assert rating.data["value"] == 4
    assert len(stack.messages(CUSTOMER)) == 4

    # Forged: tier2's From without a token (a reply to the customer's own message) ...
    stack.append(SUPPORT, [mail(sender=TIER2, subject="Re: The database is very slow [SUP-1]",
                                body="#status in-progress\n#severity 1 all down",
                                headers={"In-Reply-To": str(_msg(original)["Message-ID"])})])
    # ... and tier2's token from someone else.
    stack.append(SUPPORT, [_reply(relayed, "other@example.test", "#status in-progress")])
    _cycle(app)
    after, events2, rows2, [ref2] = _state(app)
    assert (after.status, after.severity, after.owner_group) == (t.status, t.severity,
                                                                 t.owner_group)
    assert ref2.ended_at is None
    refused = [e for e in events2 if e.data.get("what") == "refused"]
    assert len(refused) == 2
    notices = [r for r in rows2 if r.template == "forged-command-notice"]
    assert [n.recipient for n in notices] == [TIER2_LEAD]  # once per ticket
    assert len(stack.messages(CUSTOMER)) == 4
