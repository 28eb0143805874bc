"""The referral rows of :mod:`mailflow.tickets.apply`: inserted, ended, updated by token.

Kept apart so the one writer stays readable; only :func:`apply` calls into here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from mailflow.store.db import chunks, insert_many
from mailflow.store.models import Participant, Referral, StoredMessage
from mailflow.tickets import EventKind
from mailflow.tickets.effects import (
    AcceptReferral,
    EndReferrals,
    RecordCaseRef,
    Refer,
    SetEta,
)

_R = cast(Table, Referral.__table__)  # typed FromClause by DeclarativeBase
EventFn = Callable[..., None]


class ReferralWrites:
    def __init__(self) -> None:
        self.referrals: list[dict[str, Any]] = []  # new rows, in order
        self.referrals_ended: set[int] = set()  # stored tickets whose referrals end
        self.referral_updates: dict[str, dict[str, Any]] = {}  # token -> columns

    def collect(self, e: Refer | AcceptReferral | SetEta | RecordCaseRef | EndReferrals,
                now: datetime, event: EventFn) -> None:
        """Referral rows: a new one ends the ticket's earlier ones; the rest update by
        token (which may name a row inserted by this very apply)."""
        match e:
            case EndReferrals():
                for row in self.referrals:
                    if row["ticket_id"] == e.ticket and row["ended_at"] is None:
                        row["ended_at"] = now
                if e.ticket > 0:
                    self.referrals_ended.add(e.ticket)
                event(e.ticket, EventKind.NOTE, f"referrals end: {e.reason}", e.actor, now,
                      what="referrals-ended")
            case Refer():
                at = e.at or now
                for row in self.referrals:
                    if row["ticket_id"] == e.ticket and row["ended_at"] is None:
                        row["ended_at"] = at
                if e.ticket > 0:
                    self.referrals_ended.add(e.ticket)
                self.referrals.append({
                    "ticket_id": e.ticket, "group": e.group, "token": e.token,
                    "reason": e.reason[:2000], "created_at": at, "accepted_at": None,
                    "eta": None, "next_update_due": None, "external_ref": None,
                    "ended_at": None})
                event(e.ticket, EventKind.NOTE, f"referred to {e.group}: {e.reason}",
                      e.actor, at, what="referred", group=e.group)
            case AcceptReferral():
                at = e.at or now
                self.referral_updates.setdefault(e.token, {})["accepted_at"] = at
                event(e.ticket, EventKind.NOTE, f"{e.group} accepted the ticket",
                      e.actor, at, what="accepted", group=e.group)
            case SetEta():
                cols = self.referral_updates.setdefault(e.token, {})
                said = []
                if e.eta is not None:
                    cols["eta"] = e.eta
                    said.append(f"expected resolution {e.eta.isoformat()}")
                if e.next_update is not None:
                    cols["next_update_due"] = e.next_update
                    said.append(f"next update by {e.next_update.isoformat()}")
                event(e.ticket, EventKind.NOTE, f"{e.group}: {', '.join(said)}",
                      e.actor, what="eta", group=e.group,
                            eta=e.eta.isoformat() if e.eta else None,
                      next_update=e.next_update.isoformat() if e.next_update else None,
                      previous_eta=e.previous_eta.isoformat() if e.previous_eta
                      else None)
            case RecordCaseRef():
                self.referral_updates.setdefault(e.token, {})["external_ref"] = e.case_ref[:200]
                event(e.ticket, EventKind.NOTE, f"{e.group}'s case number is "
                      f"{e.case_ref}", "mailflow", what="case-ref", group=e.group,
                      case_ref=e.case_ref)

    def write(self, s: Session, fix: Any, now: datetime) -> None:
        conn = s.connection()
        if self.referrals_ended:
            conn.execute(_R.update().where(_R.c.ticket_id == bindparam("tid"),
                                           _R.c.ended_at.is_(None))
                         .values(ended_at=bindparam("at")),
                         [{"tid": t, "at": now} for t in sorted(self.referrals_ended)])
        if self.referrals:
            for row in self.referrals:
                row["ticket_id"] = fix(row["ticket_id"])
            insert_many(s, Referral, self.referrals)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for token, cols in self.referral_updates.items():
            groups.setdefault(tuple(sorted(cols)), []).append(
                {"tok": token, **{f"v_{k}": v for k, v in cols.items()}})
        for keys, rows in groups.items():
            conn.execute(_R.update().where(_R.c.token == bindparam("tok")).values(
                {k: bindparam(f"v_{k}", type_=_R.c[k].type) for k in keys}), rows)


def history(s: Session, ticket_id: int, ctx: dict[str, Any], tz_name: str) -> None:
    """The history so far and the customer's messages to attach, for a referral of a
    stored ticket (one query; referrals are rare next to the mail ingest handles)."""
    from mailflow.timewords import format_when

    customers = set(s.scalars(select(Participant.address)
                              .where(Participant.ticket_id == ticket_id)))
    rows = s.execute(select(StoredMessage.dedupe_key, StoredMessage.from_addr,
                            StoredMessage.from_name, StoredMessage.received_at,
                            StoredMessage.new_text)
                     .where(StoredMessage.ticket_id == ticket_id,
                            StoredMessage.disposition == "ticket")
                     .order_by(StoredMessage.id)).all()
    ctx["history"] = [{"when": format_when(r.received_at, tz_name),
                       "who": f"{r.from_name} <{r.from_addr}>" if r.from_name else r.from_addr,
                       "text": r.new_text[:4000]} for r in rows[-20:]]
    ctx["attach_messages"] = [r.dedupe_key for r in rows if r.from_addr in customers][-10:]


# Originals attached to one mail at most (the rest are on the ticket, and named).
ATTACH_LIMIT = 10_000_000


def attach_originals(s: Session, rows: list[dict[str, Any]], local: dict[str, bytes]) -> None:
    """Put the raw bytes of the messages each row attaches (``attach_messages``: dedupe
    keys) into its context as ``attach_raw`` (base64), for the renderer, which has no
    database: messages stored in this very apply come from ``local``, the others in one
    query. Rows are rare (referrals and relays), so this costs ingest nothing."""
    wanted = {k for row in rows for k in row["context"].get("attach_messages", ())}
    if not wanted:
        return
    raws = {k: local[k] for k in wanted if k in local}
    missing = sorted(wanted - raws.keys())
    raw: bytes | None
    for chunk in chunks(missing):
        for key, raw in s.execute(select(StoredMessage.dedupe_key, StoredMessage.raw)
                                  .where(StoredMessage.dedupe_key.in_(chunk))):
            raws[key] = raw
    for row in rows:
        ctx = row["context"]
        total, out, left = 0, [], []
        for k in ctx.get("attach_messages", ()):
            raw = raws.get(k)
            if raw is None or total + len(raw) > ATTACH_LIMIT:
                left.append(k)
                continue
            total += len(raw)
            out.append(base64.b64encode(raw).decode("ascii"))
        if out:
            ctx["attach_raw"] = out
        if left:
            ctx["attach_left_out"] = len(left)
