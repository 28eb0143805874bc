"""insert_many's direct path (plain tuples to sqlite3 or psycopg) writes exactly what
SQLAlchemy's executemany writes: the same converted timestamps, JSON (None as JSON
null), booleans and column defaults. On SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from mailflow.store.db import insert_ignore, insert_many, make_engine, session_factory
from mailflow.store.models import Base, EscalationStep, OutboxRow, Ticket, TicketEvent

NOW = datetime(2026, 11, 25, 15, 0, 0, 123456, tzinfo=UTC)


def _tickets() -> list[dict[str, Any]]:
    return [{"id": i, "subject": f"s{i}", "requester": "a@x.test", "status": "open",
             "severity": 3, "category": "technical", "owner_group": None, "tags": [],
             "reply_token": f"tok{i:09d}", "created_at": NOW - timedelta(days=i),
             "updated_at": NOW} for i in (1, 2)]  # reopen_count left to its default


def _rows(many: int = 1) -> list[tuple[type[Any], list[dict[str, Any]]]]:
    events = [{"ticket_id": 1 + i % 2, "kind": "note", "at": NOW + timedelta(seconds=i % 3),
               "actor": "me", "summary": "", "data": {"i": i, "none": None, "ü": "ß"}}
              for i in range(7 * many)]
    outbox: list[dict[str, Any]] = [
              {"ticket_id": 1, "kind": "notice", "dedupe_key": None, "mail_from": "s@x.test",
               "recipient": "r@x.test", "message_id": f"m{i}@x", "template": "t",
               "context": {"a": [1, 2.5, None]}, "status": "pending", "attempts": 0,
               "next_attempt_at": NOW, "created_at": NOW, "reply_token": None,
               "in_reply_to": None, "references": [], "auto_submitted": "auto-generated"}
              for i in range(3 * many)]
    return [(Ticket, _tickets()), (TicketEvent, events), (OutboxRow, outbox)]


def _dump(url: str, direct: bool, many: int = 1) -> list[list[tuple[Any, ...]]]:
    engine = make_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with session_factory(engine)() as s, s.begin():
        for model, rows in _rows(many):
            if direct:
                insert_many(s, model, rows)
            else:
                s.connection().execute(model.__table__.insert(), rows)
        steps = [{"ticket_id": 1, "chain": "c", "step": "s", "clock": "k", "episode": 0,
                  "fired_at": NOW, "late": True}]
        insert_ignore(s, EscalationStep, steps)
        insert_ignore(s, EscalationStep, [dict(steps[0], late=False)])  # kept: first wins
    with engine.connect() as c:
        out = [[tuple(r) for r in c.exec_driver_sql(f"SELECT * FROM {t} ORDER BY 1, 2, 3")]
               for t in ("tickets", "ticket_events", "outbox", "escalation_steps")]
        assert c.scalar(select(EscalationStep.late)) is True
    engine.dispose()
    return out


def test_direct_path_writes_what_sqlalchemy_writes(db_url: str) -> None:
    assert _dump(db_url, True) == _dump(db_url, False)


def test_many_rows_too(db_url: str) -> None:
    """Enough rows for PostgreSQL's COPY (``_COPY_FROM``): still the very same rows."""
    from mailflow.store.db import _COPY_FROM

    many = _COPY_FROM // 3 + 1  # outbox rows, events: both over the threshold
    assert _dump(db_url, True, many) == _dump(db_url, False, many)


def test_json_text_writes_what_orjson_refuses_as_the_standard_library_did() -> None:
    """A broken encoded-word can decode to a lone surrogate and an integer can outgrow
    64 bits: orjson refuses both; the column still gets the standard library's text,
    which reads back the same."""
    import json

    from mailflow.store.db import json_text

    for doc in ({"subject": "caf\ud83d"}, {"n": 2**70}, {"a": [1, "é", None], 3: True}):
        text = json_text(doc)
        assert json.loads(text) == json.loads(json.dumps(doc))
