"""Threading decisions over hand-made cases, in the documented order of trust."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailflow.linking import (
    Action,
    LinkFacts,
    LinkPolicy,
    TicketFacts,
    decide,
    message_id_for,
    reply_address,
)
from mailflow.parse import parse
from tests.mails import mail

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
POLICY = LinkPolicy("support@example.test", frozenset({"support@example.test"}), "SUP",
                    timedelta(days=30))
TOKEN = "abcdefghijkm"
T7 = TicketFacts(7, "open", TOKEN, None, frozenset({"customer@example.test"}))


def _facts(*tickets: TicketFacts, ids: dict[str, int] | None = None,
           sent: frozenset[str] = frozenset()) -> LinkFacts:
    return LinkFacts({t.id: t for t in tickets}, ids or {}, sent)


def test_reply_token_in_address_wins_even_from_a_new_address() -> None:
    m = parse(mail(sender="colleague@example.test", subject="anything",
                   to=reply_address("support@example.test", 7, TOKEN)))
    d = decide(m, _facts(T7), POLICY, NOW)
    assert d.action == Action.JOIN and d.ticket_id == 7 and "token" in d.reason


def test_wrong_token_is_not_trusted() -> None:
    m = parse(mail(to=reply_address("support@example.test", 7, "zzzzzzzzzzzz")))
    assert decide(m, _facts(T7), POLICY, NOW).action == Action.NEW


def test_token_in_our_message_id_when_client_drops_reply_to() -> None:
    ours = message_id_for(7, TOKEN, "example.test")
    m = parse(mail(headers={"In-Reply-To": f"<{ours}>"}))
    assert decide(m, _facts(T7), POLICY, NOW).ticket_id == 7


def test_references_to_a_stored_message() -> None:
    m = parse(mail(subject="AW: Re: Re: something else",
                   headers={"References": "<old@customer.test> <first@customer.test>"}))
    d = decide(m, _facts(T7, ids={"first@customer.test": 7}), POLICY, NOW)
    assert d.action == Action.JOIN and d.ticket_id == 7


def test_outlook_reply_without_in_reply_to_uses_subject_tag_from_participant() -> None:
    m = parse(mail(subject="RE: AW: Printer [SUP-7]"))
    assert decide(m, _facts(T7), POLICY, NOW).ticket_id == 7


def test_subject_tag_from_a_stranger_opens_a_linked_ticket() -> None:
    m = parse(mail(sender="mallory@evil.test", subject="Re: [SUP-7] give me the data"))
    d = decide(m, _facts(T7), POLICY, NOW)
    assert d.action == Action.NEW_LINKED and d.linked_to == 7 and d.ticket_id is None


def test_unknown_tag_and_same_subject_from_other_sender_is_new() -> None:
    m = parse(mail(sender="other@example.test", subject="Printer broken [SUP-99]"))
    assert decide(m, _facts(T7), POLICY, NOW).action == Action.NEW


def test_reply_to_resolved_reopens_and_old_closed_opens_linked() -> None:
    resolved = TicketFacts(7, "resolved", TOKEN, None, T7.participants)
    m = parse(mail(subject="Re: [SUP-7]"))
    assert decide(m, _facts(resolved), POLICY, NOW).action == Action.REOPEN
    recent = TicketFacts(7, "closed", TOKEN, NOW - timedelta(days=3), T7.participants)
    assert decide(m, _facts(recent), POLICY, NOW).action == Action.REOPEN
    old = TicketFacts(7, "closed", TOKEN, NOW - timedelta(days=60), T7.participants)
    d = decide(m, _facts(old), POLICY, NOW)
    assert d.action == Action.NEW_LINKED and d.linked_to == 7


def test_forwarded_mail_is_a_new_ticket() -> None:
    m = parse(mail(subject="Fwd: Printer broken",
                   body="---------- Forwarded message ---------\nFrom: boss"))
    assert decide(m, _facts(T7), POLICY, NOW).action == Action.NEW


def test_our_own_mail_coming_back_never_opens_a_ticket() -> None:
    ours = message_id_for(7, TOKEN, "example.test")
    copy = parse(mail(sender="support@example.test", message_id=f"<{ours}>"))
    assert decide(copy, _facts(T7, sent=frozenset({ours})), POLICY, NOW).action == \
        Action.OWN_MAIL
    plus = parse(mail(sender="support+7.abcdefghijkm@example.test"))
    assert decide(plus, _facts(T7), POLICY, NOW).action == Action.OWN_MAIL


def test_bounce_of_our_mail_is_matched_and_other_bounces_are_not() -> None:
    ours = message_id_for(7, TOKEN, "example.test")
    raw = (b"From: MAILER-DAEMON@example.test\nSubject: Undelivered\nContent-Type: "
           b"multipart/report; report-type=delivery-status; boundary=B\n\n--B\n"
           b"Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b.test\n"
           b"Status: 5.1.1\n\n--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: <"
           + ours.encode() + b">\n\n--B--\n")
    d = decide(parse(raw), _facts(T7, ids={ours: 7}, sent=frozenset({ours})), POLICY, NOW)
    assert d.action == Action.BOUNCE and d.ticket_id == 7
    d = decide(parse(raw), _facts(), POLICY, NOW)
    assert d.action in (Action.BOUNCE, Action.UNMATCHED_BOUNCE)
    other = raw.replace(ours.encode(), b"someone-else@x.test")
    assert decide(parse(other), _facts(T7), POLICY, NOW).action == Action.UNMATCHED_BOUNCE
