"""Answers staff sent from their own mail client, found in the shared Sent folder: pure.

Front-line staff often answer a customer straight from the shared mailbox in Outlook or
Thunderbird. mailflow never sees that mail go out, but the mailbox's Sent folder keeps a
copy: watched as a folder with ``role: sent``, each copy that answers a ticket is stored
on it and recorded as a response (the first-response clock stops, a next-update episode
starts). Nothing is sent and nothing there ever opens a ticket; a copy that answers no
known ticket is kept, unattached.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from mailflow.linking import (
    LinkPolicy,
    TicketFacts,
    subject_tags,
    token_in_address,
    token_in_message_id,
)
from mailflow.parse import Incoming
from mailflow.prepare import Prepared
from mailflow.tickets import Writer
from mailflow.tickets.effects import AddMessage, Effect, StaffAnswer


def answered_ticket(msg: Incoming, tickets: Mapping[int, TicketFacts],
                    message_ids: Mapping[str, int], policy: LinkPolicy) -> int | None:
    """The ticket an answer belongs to: our token in what it answers, a Message-ID it
    names that we stored, or the ticket tag with a recipient who takes part in it."""
    referenced = [msg.in_reply_to] if msg.in_reply_to else []
    referenced += list(reversed(msg.references))
    for mid in referenced:
        found = token_in_message_id(mid)
        if found and found[0] in tickets and secrets.compare_digest(
                tickets[found[0]].reply_token, found[1]):
            return found[0]
    for mid in referenced:
        tid = message_ids.get(mid)
        if tid is not None:
            return tid
    for addr in msg.reply_to:
        found = token_in_address(addr, policy.support_address)
        if found and found[0] in tickets and secrets.compare_digest(
                tickets[found[0]].reply_token, found[1]):
            return found[0]
    recipients = set(msg.to) | set(msg.cc)
    for n in subject_tags(msg.subject, policy.prefix):
        t = tickets.get(n)
        if t is not None and recipients & t.participants:
            return n
    return None


def staff_answer(p: Prepared, msg: Incoming, tickets: Mapping[int, TicketFacts],
                 message_ids: dict[str, int], policy: LinkPolicy, mailbox: str | None,
                 uidvalidity: int | None, max_attachment_size: int
                 ) -> tuple[str, list[Effect]]:
    """The effects of one copy in the Sent folder (an outcome and its effects)."""
    tid = answered_ticket(msg, tickets, message_ids, policy)
    received = p.fetched.internaldate or msg.date
    add = AddMessage(tid, p.fetched, msg, "staff-answer" if tid is not None else "sent",
                     Writer.FRONTLINE, mailbox=mailbox, uidvalidity=uidvalidity,
                     max_attachment_size=max_attachment_size, direction="out")
    if tid is None or received is None:
        return "sent-unlinked", [add]
    if msg.message_id:
        message_ids.setdefault(msg.message_id, tid)
    return "staff-answer", [add, StaffAnswer(tid, received, msg.from_addr or "staff",
                                             msg.message_id)]
