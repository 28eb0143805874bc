"""The pure ingest decision: for each case, the exact list of effects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailflow.classify import Classification
from mailflow.linking import LinkFacts, LinkPolicy, TicketFacts, message_id_for, reply_address
from mailflow.parse import parse
from mailflow.prepare import Fetched, Prepared
from mailflow.tickets import EventKind, OutboxKind, Writer
from mailflow.tickets.decide import (
    IngestPolicy,
    SeverityPromise,
    Source,
    StoreFacts,
    decide_batch,
)
from mailflow.tickets.effects import (
    AddMessage,
    Note,
    OpenTicket,
    Quarantine,
    QueueMail,
    Reopen,
    SetSeverity,
    SkipAck,
    SuppressAddress,
)
from tests.mails import mail, reply_to

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
RECEIVED = datetime(2026, 3, 2, 11, 59, tzinfo=UTC)
SUPPORT = "support@example.test"
CUSTOMER = "customer@example.test"
POLICY = IngestPolicy(
    link=LinkPolicy(SUPPORT, frozenset({SUPPORT}), "SUP", timedelta(days=30)),
    support_address=SUPPORT, ack_limit=3,
    severities={1: SeverityPromise("critical", "1 hour"), 2: SeverityPromise("high", "4 hours"),
                3: SeverityPromise("normal", "1 day")},
    max_attachment_size=10_000_000)
SOURCE = Source("support@host/INBOX", 7)
TOKEN = "abcdefghijkm"


def _cls(severity: int = 3, matched: tuple[str, ...] = ()) -> Classification:
    return Classification(severity, "technical", "frontline", (), matched, (), "v1")


def _prep(raw: bytes, uid: int = 1, severity: int = 3, suppress: str | None = None,
          matched: tuple[str, ...] = ()) -> Prepared:
    return Prepared(Fetched(uid, raw, RECEIVED), parse(raw), None, _cls(severity, matched),
                    suppress)


def _decide(*prepared: Prepared, facts: StoreFacts | None = None,
            source: Source = SOURCE) -> list[list[object]]:
    tokens = iter(f"tok{n:09d}" for n in range(100))
    out = decide_batch(list(prepared), facts or StoreFacts(), POLICY, source, NOW,
                       token=lambda: next(tokens))
    return [list(d.effects) for d in out]


def _kinds(effects: list[object]) -> list[str]:
    return [type(e).__name__ + (f":{e.kind}" if isinstance(e, Note) else "") for e in effects]


def test_new_request_opens_stores_and_acknowledges() -> None:
    raw = mail()
    [fx] = _decide(_prep(raw))
    assert _kinds(fx) == ["OpenTicket", "QueueMail", "AddMessage"]
    opened, queued, added = fx
    assert isinstance(opened, OpenTicket) and opened.key == -1
    assert opened.requester == CUSTOMER and opened.reply_token == "tok000000000"
    assert opened.created_at == RECEIVED and opened.participants == (CUSTOMER,)
    assert isinstance(queued, QueueMail)
    r = queued.request
    assert (r.kind, r.template, r.recipient, r.ticket, r.token, r.dedupe_key) == (
        OutboxKind.ACKNOWLEDGMENT, "acknowledgment", CUSTOMER, -1, "tok000000000",
        "ack:{ticket}")
    assert r.in_reply_to == parse(raw).message_id
    assert r.context["ticket"]["first_response"] == "1 day"
    assert isinstance(added, AddMessage) and added.ticket == -1
    assert added.writer == Writer.CUSTOMER and added.disposition == "ticket"


def test_reply_joins_and_raises_severity_without_a_second_ack() -> None:
    t = TicketFacts(7, "open", TOKEN, None, frozenset({CUSTOMER}), severity=3)
    raw = mail(to=reply_address(SUPPORT, 7, TOKEN), subject="Re: printer")
    facts = StoreFacts(LinkFacts({7: t}))
    [fx] = _decide(_prep(raw, severity=1, matched=("outage",)), facts=facts)
    assert _kinds(fx) == ["Note:customer-message", "AddMessage", "SetSeverity"]
    sev = fx[2]
    assert isinstance(sev, SetSeverity)
    assert (sev.ticket, sev.previous, sev.severity, sev.rules) == (7, 3, 1, ("outage",))


def test_reply_to_resolved_ticket_reopens_it() -> None:
    t = TicketFacts(7, "resolved", TOKEN, None, frozenset({CUSTOMER}))
    raw = mail(to=reply_address(SUPPORT, 7, TOKEN))
    [fx] = _decide(_prep(raw), facts=StoreFacts(LinkFacts({7: t})))
    assert _kinds(fx) == ["Reopen", "Note:customer-message", "AddMessage"]
    assert isinstance(fx[0], Reopen) and fx[0].ticket == 7 and fx[0].at == RECEIVED


def test_reply_to_long_closed_ticket_opens_a_linked_one() -> None:
    t = TicketFacts(7, "closed", TOKEN, NOW - timedelta(days=90), frozenset({CUSTOMER}))
    raw = mail(to=reply_address(SUPPORT, 7, TOKEN))
    [fx] = _decide(_prep(raw), facts=StoreFacts(LinkFacts({7: t})))
    assert _kinds(fx) == ["OpenTicket", "Note:linked", "QueueMail", "AddMessage"]
    assert isinstance(fx[0], OpenTicket) and fx[0].linked_to == 7


def test_own_mail_is_stored_and_noted_never_a_ticket() -> None:
    ours = message_id_for(7, TOKEN, "example.test")
    raw = mail(sender=SUPPORT, message_id=f"<{ours}>")
    t = TicketFacts(7, "open", TOKEN, None, frozenset({CUSTOMER}))
    facts = StoreFacts(LinkFacts({7: t}, {ours: 7}, frozenset({ours})))
    [fx] = _decide(_prep(raw), facts=facts)
    assert _kinds(fx) == ["AddMessage", "Note:own-mail-returned"]
    assert isinstance(fx[0], AddMessage) and fx[0].disposition == "own-mail"


def _dsn(original_id: str, status: str = "5.1.1") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.test\r\nTo: support@example.test\r\n"
        "Subject: Undelivered Mail\r\nMessage-ID: <dsn1@mx.example.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.test\r\n\r\n"
        f"Final-Recipient: rfc822; {CUSTOMER}\r\nAction: failed\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 no such user\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{original_id}>\r\n--b--\r\n").encode()


def test_permanent_bounce_suppresses_the_address_and_notes_the_ticket() -> None:
    ours = message_id_for(7, TOKEN, "example.test")
    t = TicketFacts(7, "open", TOKEN, None, frozenset({CUSTOMER}))
    facts = StoreFacts(LinkFacts({7: t}, {ours: 7}, frozenset({ours})))
    [fx] = _decide(_prep(_dsn(ours)), facts=facts)
    assert _kinds(fx) == ["AddMessage", "SuppressAddress", "Note:delivery-failed"]
    assert isinstance(fx[1], SuppressAddress) and fx[1].address == CUSTOMER


def test_bounce_naming_nothing_we_sent_is_quarantined() -> None:
    [fx] = _decide(_prep(_dsn("someone-else@elsewhere.test")))
    assert _kinds(fx) == ["Quarantine"]


def test_auto_reply_opens_a_ticket_without_an_ack() -> None:
    [fx] = _decide(_prep(mail(), suppress="Auto-Submitted: auto-replied"))
    assert _kinds(fx) == ["OpenTicket", "SkipAck", "AddMessage"]
    assert isinstance(fx[1], SkipAck) and "auto-replied" in fx[1].reason
    assert isinstance(fx[2], AddMessage) and fx[2].automatic


def test_ack_limit_counts_the_store_and_the_batch() -> None:
    facts = StoreFacts(ack_counts={CUSTOMER: 2})
    first, second = _decide(_prep(mail(subject="a"), uid=1), _prep(mail(subject="b"), uid=2),
                            facts=facts)
    assert _kinds(first) == ["OpenTicket", "QueueMail", "AddMessage"]
    assert _kinds(second) == ["OpenTicket", "SkipAck", "AddMessage"]
    assert isinstance(second[1], SkipAck) and "limit 3" in second[1].reason


def test_suppressed_address_gets_no_ack() -> None:
    facts = StoreFacts(suppressed={CUSTOMER: "bounce 5.1.1"})
    [fx] = _decide(_prep(mail()), facts=facts)
    assert isinstance(fx[1], SkipAck) and "suppressed" in fx[1].reason


def test_backlog_import_opens_tickets_without_customer_mail() -> None:
    old, new = _decide(_prep(mail(subject="old"), uid=5), _prep(mail(subject="new"), uid=6),
                       source=Source("mb", 1, backlog_until_uid=5))
    assert isinstance(old[1], SkipAck) and "backlog" in old[1].reason
    assert isinstance(new[1], QueueMail)


def test_duplicate_and_unparseable() -> None:
    raw = mail()
    p = _prep(raw)
    broken = Prepared(Fetched(9, b"\x00garbage", RECEIVED), None, "no headers")
    out = decide_batch([p, p, broken], StoreFacts(), POLICY, SOURCE, NOW)
    assert [d.outcome for d in out] == ["new", "duplicate", "quarantined"]
    [q] = out[2].effects
    assert isinstance(q, Quarantine) and q.reason == "no headers" and q.fetched.uid == 9


def test_reply_to_a_reply_in_the_same_batch_stays_in_the_thread() -> None:
    """Issue 10, item 7: B joins ticket 7; C answers B in the same batch."""
    t = TicketFacts(7, "open", TOKEN, None, frozenset({CUSTOMER}))
    a_id = "a@customer.test"
    b = mail(headers={"In-Reply-To": f"<{a_id}>", "References": f"<{a_id}>"},
             subject="Re: x")
    c = reply_to(b, "Colleague <colleague@example.test>", "me too")
    facts = StoreFacts(LinkFacts({7: t}, {a_id: 7}))
    fb, fc = _decide(_prep(b, uid=1), _prep(c, uid=2), facts=facts)
    added = [e for e in fc if isinstance(e, AddMessage)]
    assert [e.ticket for e in added] == [7]
    assert not any(isinstance(e, OpenTicket) for e in fb + fc)


def test_reply_to_a_ticket_opened_earlier_in_the_batch_joins_it() -> None:
    first = mail()
    second = reply_to(first, "Customer <customer@example.test>", "more", to=SUPPORT)
    _, f2 = _decide(_prep(first, uid=1), _prep(second, uid=2, severity=2))
    assert _kinds(f2) == ["Note:customer-message", "AddMessage", "SetSeverity"]
    assert f2[0].ticket == -1 and isinstance(f2[2], SetSeverity) and f2[2].previous == 3
    assert isinstance(f2[0], Note) and f2[0].kind == EventKind.CUSTOMER_MESSAGE
