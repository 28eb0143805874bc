"""What mail *would* do, decided against the store and never written.

``mailflow rules test --effects`` shows an administrator the effects a message would
have (open a ticket, join SUP-12 and raise its severity, no acknowledgment because of
the limit) before it arrives. The decision is the one ingest makes
(:meth:`mailflow.ingest.Ingestor.decide`), inside a transaction that is always rolled
back: nothing here calls :func:`mailflow.tickets.apply.apply` or commits. On PostgreSQL
the decision takes the row and advisory locks ingest takes (:mod:`mailflow.store.facts`),
for the moment of the decision; the rollback releases them.

The configured database is used when it exists and is at the current schema; otherwise
an empty in-memory store stands in, and :attr:`Store.why_empty` says why, because
"opens a new ticket" means little if the ticket it would join is in a database we could
not read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from mailflow.classify import RuleSet
from mailflow.config import Settings
from mailflow.explain import database_problem, safe_url
from mailflow.ingest import Ingestor
from mailflow.prepare import Fetched, prepare_one
from mailflow.store.db import current_revision, head_revision, make_engine, session_factory
from mailflow.store.models import Base
from mailflow.tickets.decide import MessageDecision, Source


@dataclass(frozen=True)
class Store:
    sessions: sessionmaker[Session]
    described: str  # "the database sqlite:///..." or "an empty store"
    why_empty: str | None = None  # None: the configured database is used


@contextmanager
def store_for(settings: Settings) -> Iterator[Store]:
    """The configured database if it can be read at the current schema, else an empty
    in-memory one; the engine is disposed of afterwards."""
    engine, why = _configured(settings)
    if engine is None:
        engine = make_engine("sqlite://", poolclass=StaticPool)
        Base.metadata.create_all(engine)
        store = Store(session_factory(engine), "an empty store", why)
    else:
        store = Store(session_factory(engine),
                      f"the database {safe_url(settings.database_url)}")
    try:
        yield store
    finally:
        engine.dispose()


def _configured(settings: Settings) -> tuple[Engine | None, str | None]:
    url = settings.database_url
    if url.startswith("sqlite"):
        # Opening a SQLite file that does not exist would create it: look first.
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path or path == ":memory:" or not Path(path).is_file():
            return None, f"no database file at {path or '(memory)'}"
    try:
        engine = make_engine(url)
    except Exception as exc:  # noqa: BLE001 - a missing driver: fall back, say why
        return None, database_problem(exc, url) or f"database: {exc}"
    try:
        current = current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - unreachable, refused: fall back, say why
        engine.dispose()
        return None, database_problem(exc, url) or f"database: {exc}"
    head = head_revision()
    if current != head:
        engine.dispose()
        return None, ("the database has no mailflow schema yet" if current is None else
                      f"the database schema is {current}, not the current {head}")
    return engine, None


def decide_files(store: Store, settings: Settings, rules: RuleSet, raws: Sequence[bytes],
                 now: datetime) -> list[MessageDecision]:
    """One decision per message, each as if it arrived alone next (none sees another's
    ticket), in one transaction that is rolled back."""
    ingestor = Ingestor(settings, store.sessions)
    out: list[MessageDecision] = []
    s = store.sessions()
    try:
        s.begin()
        for i, raw in enumerate(raws, start=1):
            # UID 1 and up, source without a backlog: decided as new mail.
            p = prepare_one(Fetched(i, raw, None), rules, now, settings.tz, ingestor.own)
            out.extend(ingestor.decide(s, [p], Source(), now))
    finally:
        s.rollback()
        s.close()
    return out
