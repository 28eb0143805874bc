"""Rows the one writer inserts, built from effects: plain dictionaries for executemany.

Split from :mod:`mailflow.tickets.apply` to keep it readable; nothing here touches the
database.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from mailflow.linking import reply_address
from mailflow.subjects import clean_subject
from mailflow.tickets import OutboxStatus, ref
from mailflow.tickets.effects import AddMessage, MailRequest


def message_row(e: AddMessage, received: datetime
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ``messages`` row (raw bytes kept) and its attachments' rows."""
    msg, f = e.msg, e.fetched
    flags = []
    if not msg.from_valid:
        flags.append("invalid-from")
    if msg.html_only:
        flags.append("html-only")
    if msg.defects:
        flags.append("defects:" + ",".join(msg.defects[:5]))
    if e.automatic:
        flags.append("automatic")
    limit = e.max_attachment_size
    atts = [{"filename": a.filename[:500], "content_type": a.content_type[:255],
             "size": a.size, "kept": limit is None or a.size <= limit}
            for a in msg.attachments]
    return ({
        "ticket_id": e.ticket, "direction": e.direction, "disposition": e.disposition,
        "mailbox": e.mailbox, "uidvalidity": e.uidvalidity, "uid": f.uid,
        "message_id": msg.message_id[:998] if msg.message_id else None,
        "dedupe_key": msg.dedupe_key, "in_reply_to": msg.in_reply_to,
        "references": list(msg.references[-50:]), "from_addr": msg.from_addr[:320],
        "from_name": msg.from_name, "to_addrs": list(msg.to), "cc_addrs": list(msg.cc),
        "subject": msg.subject, "sent_at": msg.date, "received_at": received,
        "new_text": msg.new_text,
        "body_text": None if msg.text.strip() == msg.new_text.strip() else msg.text,
        "flags": flags, "raw": msg.raw,
    }, atts)


def outbox_row(r: MailRequest, support_address: str, now: datetime) -> dict[str, Any]:
    """An ``outbox`` row; its Message-ID and ticket id are fixed at write time."""
    return {
        "ticket_id": r.ticket, "kind": str(r.kind), "dedupe_key": r.dedupe_key,
        "mail_from": r.mail_from or support_address, "recipient": r.recipient,
        "message_id": None, "template": r.template, "context": dict(r.context),
        "status": str(OutboxStatus.PENDING), "attempts": 0, "next_attempt_at": now,
        "created_at": now, "reply_token": r.token, "in_reply_to": r.in_reply_to,
        "references": list(r.references), "auto_submitted": r.auto_submitted,
        "shared_context": None,
    }


def finish_context(ctx: dict[str, Any], token: str | None, tid: int | None,
                   support_address: str, prefix: str) -> None:
    """What a template gets that only the writer knows: the ticket's reference, the
    reply address of the row's token, and the subject with exactly one tag, ours (the
    customer may have quoted others; each template says itself whether it starts with
    "Re:")."""
    if tid is None:
        ctx.setdefault("support_address", support_address)
        return
    ctx["support_address"] = support_address  # the ticket's desk's, whoever queued it
    tref = ref(prefix, tid)
    ctx["ticket"] = {**ctx.get("ticket", {}), "ref": tref}
    if token:
        ctx["reply_address"] = reply_address(support_address, tid, token)
    if "subject" in ctx:
        ctx["subject"] = _clean_subject(str(ctx["subject"] or ""), prefix, tref)


@functools.lru_cache(maxsize=4096)
def _clean_subject(subject: str, prefix: str, tref: str) -> str:
    # Memoised: a ticket's mails of one batch (an escalation step's three, a referral's
    # two) carry the same subject.
    return clean_subject(subject, prefix, tref)
