"""The escalation scheduler: wakes at the next due time, never scans every ticket.

Each ticket stores the next time anything about it is due (``tickets.next_due_at``,
indexed). The one writer sets it to *now* whenever it changes a ticket (a new message,
a status, a referral), meaning "look at me again"; the scheduler then computes the
ticket's clocks from its event trail (:mod:`mailflow.sla_history`,
:mod:`mailflow.slaclock`), stores them (``ticket_clocks``, read by ``tickets list
--overdue`` and the digest), fires the escalation steps that are due
(:mod:`mailflow.escalation_chain`, :mod:`mailflow.escalation`) and sets the next due
time. A tick costs one indexed range query plus work for the tickets actually due.

Exactly once: the due tickets are claimed with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (two schedulers never take the same ticket), and each fired step is a row
of ``escalation_steps`` (primary key: ticket, chain, step, clock, episode) written in
the same transaction as the step's effects. A crash before the commit fires nothing;
after it, the row says the step is done. After downtime, due steps fire in order, each
once; a step whose moment passed long ago is recorded as late.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.accounts import apply_context
from mailflow.classify.groups import GroupsConfig
from mailflow.config import Settings
from mailflow.escalation import StepContext, fold_step_mails, request_effects, step_effects
from mailflow.escalation_chain import StepKey, plan_steps
from mailflow.linking import new_token
from mailflow.policies import Policies, PoliciesHolder
from mailflow.sla_history import CLOCK_EVENTS, EventRow, facts_of
from mailflow.slaclock import Opened, TicketClocks, ticket_clocks
from mailflow.store.db import chunks, insert_ignore, insert_many, transaction
from mailflow.store.facts import ticket_facts
from mailflow.store.models import (
    EscalationStep,
    OutboxRow,
    Ticket,
    TicketClock,
    TicketEvent,
)
from mailflow.tickets import EventKind
from mailflow.tickets.apply import apply
from mailflow.tickets.effects import Effect, Refer, Schedule, SetSeverity
from mailflow.tickets.referral import TierPolicy

log = logging.getLogger(__name__)

_T = Ticket.__table__


@dataclass
class TickResult:
    looked: int = 0
    fired: list[tuple[int, str, bool]] = field(default_factory=list)  # ticket, step, late
    queued: int = 0


@dataclass(frozen=True)
class _Row:
    id: int
    created_at: datetime
    requester: str


class Scheduler:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 token: Callable[[], str] = new_token):
        self.settings = settings
        self.sessions = sessions
        self.policies = PoliciesHolder(settings.rules_path, settings.tz)
        self.token = token

    def tier_policy(self, groups: GroupsConfig) -> TierPolicy:
        st = self.settings
        return TierPolicy(st.support_address, groups, st.tz,
                          {n: lvl.label for n, lvl in st.severities.items()})

    def next_wake(self) -> datetime | None:
        with self.sessions() as s:
            return s.scalar(select(func.min(Ticket.next_due_at)))

    def tick(self, now: datetime, limit: int = 1000) -> TickResult:
        """Everything due at ``now`` (up to ``limit`` tickets), in one transaction."""
        result = TickResult()
        pol = self.policies.refresh()
        if pol is None:
            return result
        with transaction(self.sessions) as s:
            q = (select(Ticket.id, Ticket.created_at, Ticket.requester)
                 .where(Ticket.next_due_at <= now).order_by(Ticket.next_due_at).limit(limit))
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True, of=Ticket)
            rows = [_Row(*r) for r in s.execute(q)]
            result.looked = len(rows)
            if rows:
                result.queued = self._work(s, rows, pol, now, result)
        return result

    # -- one batch of due tickets --------------------------------------------------------
    def _work(self, s: Session, rows: list[_Row], pol: Policies, now: datetime,
              result: TickResult) -> int:
        ids = [r.id for r in rows]
        requests: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
        events, outbox_kinds, fired = _load(s, ids, requests)
        facts = ticket_facts(s, ids, lock=False)
        stored = _stored_clocks(s, ids)
        rewrite: list[int] = []  # tickets whose stored clocks are replaced
        tier = self.tier_policy(pol.groups)
        effects: list[Effect] = []
        steps: list[dict[str, Any]] = []
        clocks: list[dict[str, Any]] = []
        next_due: list[dict[str, Any]] = []
        accept_within = pol.accept_within()
        for r in rows:
            history = facts_of(events.get(r.id, ()), r.requester, outbox_kinds)
            t = facts.get(r.id)
            opened = history[0] if history and isinstance(history[0], Opened) else None
            if t is None or opened is None or opened.at > now:
                # Nothing to clock (yet): opened "in the future" means the mail
                # server's clock is ahead of ours. What was stored goes.
                next_due.append({"tid": r.id, "due": opened.at if t and opened else None})
                if r.id in stored:
                    rewrite.append(r.id)
                continue
            tc = ticket_clocks(history, pol.sla, now, accept_within)
            done = fired.get(r.id, set())
            changed = False
            ctx = StepContext(t, r.created_at, tc, pol.groups, pol.escalation, tier, now)
            plan = plan_steps(pol.escalation, tc, done, now)
            fired_now: list[tuple[str, list[Effect]]] = []
            for due in plan.due:
                # A new referral's token: only a step that refers needs one.
                refers = any(a.kind == "refer-fallback" for a in due.step.actions)
                fx = step_effects(due, ctx, self.token() if refers else "")
                fired_now.append((due.step.name, fx))
                done.add(due.key)
                steps.append({"ticket_id": r.id, "chain": due.key.chain,
                              "step": due.key.step, "clock": due.key.clock,
                              "episode": due.key.episode, "fired_at": now, "late": due.late})
                result.fired.append((r.id, due.key.step, due.late))
                changed |= any(isinstance(e, SetSeverity | Refer) for e in fx)
                log.info("escalation: ticket %s step %s (%s)%s", r.id, due.key.step,
                         due.reason, " [late]" if due.late else "")
            for eid, asked in requests.get(r.id, ()):
                key = StepKey("request", f"request-{eid}", "request", 0)
                if key in done:
                    continue
                fx = request_effects(eid, asked, ctx)
                fired_now.append((key.step, fx))
                done.add(key)
                steps.append({"ticket_id": r.id, "chain": key.chain, "step": key.step,
                              "clock": key.clock, "episode": 0, "fired_at": now,
                              "late": False})
                log.info("ticket %s: escalation request by the customer handled", r.id)
            effects += fold_step_mails(fired_now)
            mine = _clock_rows(r.id, tc)
            if _clock_set(mine) != stored.get(r.id, frozenset()):
                # Unchanged clocks are not written again: most looks at a ticket (a step
                # due, a new mail) leave them as they were.
                clocks += mine
                if r.id in stored:
                    rewrite.append(r.id)
            next_due.append({"tid": r.id, "due": now if changed
                             else _next_due(plan.next_at, tc, now)})
        effects += [Schedule(d["tid"], d["due"]) for d in next_due]
        applied = apply(s, effects, apply_context(self.settings, now))
        insert_ignore(s, EscalationStep, steps)
        for chunk in chunks(rewrite):
            s.execute(delete(TicketClock).where(TicketClock.ticket_id.in_(chunk)))
        insert_many(s, TicketClock, clocks)
        return applied.queued


def _next_due(next_step: datetime | None, tc: TicketClocks, now: datetime
              ) -> datetime | None:
    """The next escalation step, or the next moment a clock is breached (so the stored
    clocks say so), whichever comes first."""
    found = [c.due for c in tc.clocks
             if c.stopped is None and c.due is not None and c.due > now]
    if next_step is not None:
        found.append(next_step)
    return min(found) if found else None


def _clock_rows(tid: int, tc: TicketClocks) -> list[dict[str, Any]]:
    return [{"ticket_id": tid, "kind": c.kind, "episode": c.episode, "policy": c.policy,
             "severity": tc.severity, "owner_group": tc.owner, "started_at": c.started,
             "due_at": c.due, "stopped_at": c.stopped, "state": c.state,
             "paused_seconds": int(c.paused.total_seconds())} for c in tc.clocks]


_CLOCK_KEYS = ("kind", "episode", "policy", "severity", "owner_group", "started_at",
               "due_at", "stopped_at", "state", "paused_seconds")
_ClockT = TicketClock.__table__


def _clock_set(rows: list[dict[str, Any]]) -> frozenset[tuple[Any, ...]]:
    return frozenset(tuple(r[k] for k in _CLOCK_KEYS) for r in rows)


def _stored_clocks(s: Session, ids: list[int]) -> dict[int, frozenset[tuple[Any, ...]]]:
    """The clocks stored for these tickets, as ``_clock_rows`` would make them."""
    found: dict[int, set[tuple[Any, ...]]] = defaultdict(set)
    for chunk in chunks(ids):
        for row in s.execute(select(_ClockT.c.ticket_id, *(_ClockT.c[k] for k in _CLOCK_KEYS))
                             .where(_ClockT.c.ticket_id.in_(chunk))):
            found[row[0]].add(tuple(row[1:]))
    return {tid: frozenset(v) for tid, v in found.items()}


_REQUESTED = str(EventKind.ESCALATION_REQUESTED)
_StepT = EscalationStep.__table__


def _load(s: Session, ids: list[int],
          requests: dict[int, list[tuple[int, datetime]]] | None = None,
          ) -> tuple[dict[int, list[EventRow]], dict[int, str], dict[int, set[StepKey]]]:
    """The due tickets' clock events, the kinds of their outbox rows (a ``mail-sent``
    event names one) and their fired steps; with ``requests``, also the customers'
    escalation requests (event id and time, each answered once: a step row), read by
    the same query as the events."""
    events: dict[int, list[EventRow]] = defaultdict(list)
    kinds: dict[int, str] = {}
    fired: dict[int, set[StepKey]] = defaultdict(set)
    wanted = CLOCK_EVENTS if requests is None else (*CLOCK_EVENTS, _REQUESTED)
    for chunk in chunks(ids):
        for eid, tid, kind, at, data in s.execute(
                select(TicketEvent.id, TicketEvent.ticket_id, TicketEvent.kind, TicketEvent.at,
                       TicketEvent.data)
                .where(TicketEvent.ticket_id.in_(chunk), TicketEvent.kind.in_(wanted))
                .order_by(TicketEvent.id)):
            if kind == _REQUESTED and requests is not None:
                requests[tid].append((eid, at))
            else:
                events[tid].append(EventRow(kind, at, data or {}))
        kinds.update((oid, kind) for oid, kind in s.execute(
            select(OutboxRow.id, OutboxRow.kind).where(OutboxRow.ticket_id.in_(chunk))))
        for tid, chain, step, clock, episode in s.execute(
                select(_StepT.c.ticket_id, _StepT.c.chain, _StepT.c.step, _StepT.c.clock,
                       _StepT.c.episode).where(_StepT.c.ticket_id.in_(chunk))):
            fired[tid].add(StepKey(chain, step, clock, episode))
    return events, kinds, fired


def clocks_of(s: Session, settings: Settings, ticket_id: int, now: datetime,
              policies: Policies) -> TicketClocks | None:
    """One ticket's clocks now, for ``tickets show`` and ``sla explain``."""
    row = s.execute(select(Ticket.requester).where(Ticket.id == ticket_id)).first()
    if row is None:
        return None
    events, kinds, _ = _load(s, [ticket_id])
    history = facts_of(events.get(ticket_id, ()), row.requester, kinds)
    if not history or not isinstance(history[0], Opened):
        return None
    return ticket_clocks(history, policies.sla, max(now, history[0].at),
                         policies.accept_within())
