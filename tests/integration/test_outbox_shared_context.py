"""An escalation step's notices store their common context once (``outbox_contexts``):
every mail must render byte for byte as it did with the whole context in each row."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mailflow.classify.groups import load_groups
from mailflow.compose import Composer
from mailflow.escalation import StepContext, step_effects
from mailflow.escalation_chain import due_steps, load_escalation
from mailflow.linking import TicketFacts
from mailflow.renderpool import RenderPool, render
from mailflow.sla_history import EventRow, facts_of
from mailflow.sla_policy import load_sla
from mailflow.slaclock import ticket_clocks
from mailflow.store.db import transaction
from mailflow.store.models import OutboxContext, OutboxRow, Ticket
from mailflow.tickets.apply import apply
from mailflow.tickets.effects import Effect, QueueMail

RULES = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
T = TicketFacts(7, "open", "abcdefghijkm", None, frozenset({"c@x.test"}), 3, "tier2",
                "c@x.test", "Re: [SUP-7] Printer [ext-99]", "technical")


def _same(raw: bytes) -> bytes:
    """The bytes with the MIME boundary (random per render) made constant."""
    return re.sub(rb"=_mf_[0-9a-f]{24}", b"=_mf_boundary", raw)


def _step_mails() -> list[QueueMail]:
    groups = load_groups(RULES)
    from mailflow.tickets.referral import TierPolicy

    tier = TierPolicy("support@example.test", groups, UTC, {3: "normal"})
    events = [EventRow("opened", NOW - timedelta(days=3),
                       {"severity": 3, "category": "technical", "owner_group": "tier2"})]
    tc = ticket_clocks(facts_of(events, T.requester or "", {}), load_sla(RULES, tz=UTC), NOW)
    esc = load_escalation(RULES)
    ctx = StepContext(T, NOW - timedelta(days=3), tc, groups, esc, tier, NOW)
    fx: list[Effect] = []
    for due in due_steps(esc, tc, set(), NOW):
        fx += step_effects(due, ctx, "tok000000009")
    return [e for e in fx if isinstance(e, QueueMail)]


def _whole(q: QueueMail) -> QueueMail:
    """The same mail with its whole context in the row, as before sharing."""
    r = q.request
    assert r.shared is not None
    return dataclasses.replace(q, request=dataclasses.replace(
        r, context={**r.shared, **r.context}, shared=None,
        dedupe_key=f"{r.dedupe_key}:whole"))


def test_shared_context_renders_the_same_mail(db_url: str, make_app, tmp_path: Path) -> None:
    app = make_app(None, db_url)
    mails = _step_mails()
    assert len(mails) >= 3 and all(q.request.shared is not None for q in mails)
    with transaction(app.sessions) as s:
        s.add(Ticket(id=T.id, subject=T.subject, requester=T.requester, status="open",
                     severity=3, category="technical", owner_group="tier2", tags=[],
                     reply_token=T.reply_token, reopen_count=0,
                     created_at=NOW - timedelta(days=3), updated_at=NOW))
    for batch in (mails, [_whole(q) for q in mails]):
        with transaction(app.sessions) as s:
            assert apply(s, batch, app.ingestor.apply_context(NOW)).queued == len(mails)
    with app.sessions() as s:
        rows = s.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()
        stored = s.scalar(select(func.count()).select_from(OutboxContext))
    shared, whole = rows[:len(mails)], rows[len(mails):]
    # One stored context per step that queues two mails or more (not per mail); their
    # rows keep only what differs. A step's only mail keeps its whole context.
    uses = Counter(id(q.request.shared) for q in mails)
    assert stored == sum(1 for n in uses.values() if n > 1) > 0
    for q, r in zip(mails, shared, strict=True):
        assert (r.shared_context is not None) == (uses[id(q.request.shared)] > 1)
        assert ("step" in r.context) == (r.shared_context is None)
    assert all(r.shared_context is None and "step" in r.context for r in whole)
    composer = Composer(app.settings.templates_path)
    for a, b in zip(shared, whole, strict=True):
        assert list(a.full_context().items()) == list(b.full_context().items())
        a.message_id = b.message_id  # drawn at random per row
        assert _same(render(a, composer, app.settings, NOW)) == _same(
            render(b, composer, app.settings, NOW))
    # The render worker has no database: the rows go to it with their whole context.
    pool = RenderPool(app.settings, composer, 1)
    try:
        remote: list[Any] = asyncio.run(pool.render(list(shared), NOW))
    finally:
        pool.close()
    assert [_same(r) for r in remote] == [_same(render(b, composer, app.settings, NOW))
                                          for b in whole]
