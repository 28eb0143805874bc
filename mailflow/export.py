"""``mailflow export``: tickets with their mail, for backups and for leaving.

A database backup (``sqlite3 .backup``, ``pg_dump``) restores mailflow; an export is for
people and other tools: JSON lines (one ticket per line, with its messages, events and the
mail we sent) or one mbox per ticket that any mail client opens. It only reads, and it
streams: tickets are fetched in pages by id (keyset pagination, no long-lived cursor), so
memory stays flat however large the database is, and the daemon keeps running meanwhile.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker, undefer

from mailflow.retention import RAW_PURGED
from mailflow.store.models import OutboxRow, StoredMessage, Ticket, TicketEvent

EVERYTHING = datetime(1970, 1, 1, tzinfo=UTC)  # no --since: the first, full backup
PAGE = 200  # tickets per query page: bounds memory to a page's mail, keeps round trips few
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


@dataclass
class ExportReport:
    tickets: int = 0
    messages: int = 0
    sent: int = 0
    # Messages whose raw bytes retention removed: rebuilt from the stored fields in mbox.
    purged: int = 0
    files: list[Path] = field(default_factory=list)


def parse_since(text: str, now: datetime, tz: tzinfo = UTC) -> datetime:
    """``2026-01-31``, ``2026-01-31T08:00`` (in ``tz`` unless it names a zone) or a
    duration back from now (``30d``, as ``rules replay --since`` takes)."""
    from mailflow.config import parse_duration

    value = text.strip()
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=tz)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'not a date, a date and time or a duration (got "{text}")') from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d is not None else None


def _read_only(session: Session) -> None:
    """One consistent, read-only snapshot for the whole export where the backend has one.

    PostgreSQL: REPEATABLE READ READ ONLY, so every page sees the same database state
    while the daemon keeps writing. On SQLite the driver opens no transaction for reads:
    each page is read as it is then, which is enough for a backup of append-mostly data.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ",
                                              "postgresql_readonly": True})


def iter_tickets(session: Session, since: datetime, page: int = PAGE
                 ) -> Iterator[Sequence[Ticket]]:
    """Pages of tickets created or changed at or after ``since`` (an incremental backup
    catches new mail on old tickets), in id order."""
    last = 0
    while True:
        rows = session.scalars(select(Ticket).where(Ticket.updated_at >= since,
                                                    Ticket.id > last)
                               .options(selectinload(Ticket.participants))
                               .order_by(Ticket.id).limit(page)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id
        session.expunge_all()  # a page's objects are not needed once written


def _messages(session: Session, ids: list[int], raw: bool) -> dict[int, list[StoredMessage]]:
    q = (select(StoredMessage).where(StoredMessage.ticket_id.in_(ids))
         .options(undefer(StoredMessage.body_text), selectinload(StoredMessage.attachments))
         .order_by(StoredMessage.id))
    if raw:
        q = q.options(undefer(StoredMessage.raw))
    out: dict[int, list[StoredMessage]] = {i: [] for i in ids}
    for m in session.scalars(q):
        assert m.ticket_id is not None
        out[m.ticket_id].append(m)
    return out


def _outbox(session: Session, ids: list[int], raw: bool) -> dict[int, list[OutboxRow]]:
    q = select(OutboxRow).where(OutboxRow.ticket_id.in_(ids)).order_by(OutboxRow.id)
    if raw:
        q = q.options(undefer(OutboxRow.raw))
    out: dict[int, list[OutboxRow]] = {i: [] for i in ids}
    for o in session.scalars(q):
        assert o.ticket_id is not None
        out[o.ticket_id].append(o)
    return out


def _events(session: Session, ids: list[int]) -> dict[int, list[TicketEvent]]:
    out: dict[int, list[TicketEvent]] = {i: [] for i in ids}
    for e in session.scalars(select(TicketEvent).where(TicketEvent.ticket_id.in_(ids))
                             .order_by(TicketEvent.id)):
        out[e.ticket_id].append(e)
    return out


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


Prefix = str | Mapping[str | None, str]


def _prefix(prefix: Prefix, t: Ticket) -> str:
    """A ticket's prefix: one for all, or by desk (``mailboxes:``), None the main one."""
    return prefix if isinstance(prefix, str) else prefix.get(t.desk) or prefix[None]


def ticket_record(prefix: Prefix, t: Ticket, msgs: list[StoredMessage], sent: list[OutboxRow],
                  events: list[TicketEvent], raw: bool) -> dict[str, Any]:
    """One JSON line: everything a person or a migration needs about one ticket."""
    return {
        "ref": f"{_prefix(prefix, t)}-{t.id}", "id": t.id, "desk": t.desk, "subject": t.subject,
        "requester": t.requester, "status": t.status, "severity": t.severity,
        "category": t.category, "owner_group": t.owner_group, "tags": t.tags,
        "linked_ticket": t.linked_ticket_id, "rules_version": t.rules_version,
        "reopen_count": t.reopen_count,
        "participants": sorted(p.address for p in t.participants),
        "created_at": _iso(t.created_at), "updated_at": _iso(t.updated_at),
        "last_customer_at": _iso(t.last_customer_at),
        "first_response_at": _iso(t.first_response_at),
        "resolved_at": _iso(t.resolved_at), "closed_at": _iso(t.closed_at),
        "messages": [{
            "id": m.id, "direction": m.direction, "disposition": m.disposition,
            "message_id": m.message_id, "in_reply_to": m.in_reply_to,
            "references": m.references, "from": m.from_addr, "from_name": m.from_name,
            "to": m.to_addrs, "cc": m.cc_addrs, "subject": m.subject,
            "sent_at": _iso(m.sent_at), "received_at": _iso(m.received_at),
            "text": m.full_text, "new_text": m.new_text, "flags": m.flags,
            "attachments": [{"filename": a.filename, "type": a.content_type,
                             "size": a.size, "kept": a.kept} for a in m.attachments],
            **({"raw_base64": _b64(m.raw)} if raw else {}),
        } for m in msgs],
        "sent": [{
            "id": o.id, "kind": o.kind, "to": o.recipient, "from": o.mail_from,
            "message_id": o.message_id, "template": o.template, "status": o.status,
            "attempts": o.attempts, "created_at": _iso(o.created_at),
            "sent_at": _iso(o.sent_at), "last_error": o.last_error,
            **({"raw_base64": _b64(o.raw)} if raw else {}),
        } for o in sent],
        "events": [{"at": _iso(e.at), "kind": e.kind, "actor": e.actor,
                    "summary": e.summary, "data": e.data} for e in events],
    }


def export_jsonl(sessions: sessionmaker[Session], out: IO[str], since: datetime,
                 prefix: Prefix, raw: bool = True) -> ExportReport:
    """Write one JSON object per ticket and line; raw mail as base64 unless ``raw`` is
    False (then the file is a readable record, not a restorable one)."""
    report = ExportReport()
    with sessions() as s:
        _read_only(s)
        for page in iter_tickets(s, since):
            ids = [t.id for t in page]
            msgs, sent, events = _messages(s, ids, raw), _outbox(s, ids, raw), _events(s, ids)
            for t in page:
                out.write(json.dumps(ticket_record(prefix, t, msgs[t.id], sent[t.id],
                                                   events[t.id], raw), ensure_ascii=False))
                out.write("\n")
                report.tickets += 1
                report.messages += len(msgs[t.id])
                report.sent += len(sent[t.id])
                report.purged += sum(RAW_PURGED in m.flags for m in msgs[t.id])
    return report


def _rebuilt(m: StoredMessage) -> bytes:
    """A stand-in for a message whose raw bytes retention removed: the headers and text
    mailflow kept, marked so nobody mistakes it for the original."""
    e = EmailMessage()
    e["From"] = formataddr((m.from_name, m.from_addr)) if m.from_name else m.from_addr
    if m.to_addrs:
        e["To"] = ", ".join(m.to_addrs)
    if m.cc_addrs:
        e["Cc"] = ", ".join(m.cc_addrs)
    e["Subject"] = m.subject
    e["Date"] = format_datetime(m.sent_at or m.received_at)
    if m.message_id:
        e["Message-ID"] = m.message_id
    if m.in_reply_to:
        e["In-Reply-To"] = m.in_reply_to
    e["X-Mailflow-Raw-Purged"] = "the original was removed by retention; text as stored"
    e.set_content(m.full_text or "")
    return e.as_bytes()


def mbox_entry(sender: str, when: datetime, raw: bytes) -> bytes:
    """One mboxrd entry: ``From `` separator, LF line ends, ``>From`` quoting (reversible)."""
    body = raw.replace(b"\r\n", b"\n")
    body = _FROM_LINE.sub(rb">\1", body)
    if not body.endswith(b"\n"):
        body += b"\n"
    stamp = when.astimezone(UTC).strftime("%a %b %d %H:%M:%S %Y")
    return f"From {sender or 'MAILER-DAEMON'} {stamp}\n".encode() + body + b"\n"


def export_mbox(sessions: sessionmaker[Session], directory: Path, since: datetime,
                prefix: Prefix) -> ExportReport:
    """One ``PREFIX-N.mbox`` per ticket: the mail received and the mail we sent, in time
    order. Mail not rendered yet (still pending) has no bytes and is left out."""
    directory.mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    with sessions() as s:
        _read_only(s)
        for page in iter_tickets(s, since):
            ids = [t.id for t in page]
            msgs, sent = _messages(s, ids, True), _outbox(s, ids, True)
            for t in page:
                entries: list[tuple[datetime, int, bytes]] = []
                for m in msgs[t.id]:
                    purged = RAW_PURGED in m.flags or not m.raw
                    report.purged += purged
                    entries.append((m.received_at, len(entries), mbox_entry(
                        m.from_addr, m.received_at, _rebuilt(m) if purged else m.raw)))
                for o in sent[t.id]:
                    if o.raw:
                        when = o.sent_at or o.created_at
                        entries.append((when, len(entries), mbox_entry(o.mail_from, when,
                                                                       o.raw)))
                        report.sent += 1
                entries.sort(key=lambda e: (e[0], e[1]))
                path = directory / f"{_prefix(prefix, t)}-{t.id}.mbox"
                tmp = path.with_suffix(".mbox.tmp")
                with tmp.open("wb") as f:
                    for _, _, entry in entries:
                        f.write(entry)
                tmp.replace(path)  # never a half-written mbox under the final name
                report.files.append(path)
                report.tickets += 1
                report.messages += len(msgs[t.id])
    return report
