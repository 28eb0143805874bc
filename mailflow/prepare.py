"""The half of ingesting a message that needs no database: parse, classify, loop check.

Kept apart from :mod:`mailflow.ingest` so that the parse worker process imports neither
SQLAlchemy nor Alembic (about 0.4 s of its start-up), and so that what runs there is
plainly pure: bytes and rules in, picklable data out.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from mailflow.autoresponse import suppress_reason
from mailflow.classify import Classification, Facts, RuleSet
from mailflow.parse import Incoming, Unparseable, parse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    internaldate: datetime | None = None


@dataclass(frozen=True)
class Prepared:
    """Parsed, classified and checked for automatic-mail markers. Plain, picklable data,
    so that it can be computed in a worker process while the previous batch is written."""

    fetched: Fetched
    msg: Incoming | None
    error: str | None = None  # why it could not be parsed (then msg is None)
    classification: Classification | None = None
    suppress: str | None = None  # why no automatic reply may go to it (RFC 3834)

    @property
    def key(self) -> str:
        """The dedupe key: the same mail seen twice is stored once."""
        return self.msg.dedupe_key if self.msg is not None else raw_key(self.fetched.raw)


def raw_key(raw: bytes) -> str:
    return "raw:" + hashlib.sha256(raw).hexdigest()[:60]


def prepare_one(f: Fetched, rules: RuleSet, now: datetime, tz: tzinfo,
                own: frozenset[str]) -> Prepared:
    try:
        msg = parse(f.raw)
    except Unparseable as exc:
        return Prepared(f, None, str(exc))
    except Exception as exc:
        log.exception("parser failed on uid %s", f.uid)
        return Prepared(f, None, f"parser error: {type(exc).__name__}: {exc}")
    received = f.internaldate or now
    # Classified up front even if linking later calls it a bounce: the rules are pure and
    # this may run on another core, where it costs the writer nothing.
    cls = rules.evaluate(Facts.of(msg, received.astimezone(tz)), trace=False)
    return Prepared(f, msg, None, cls, suppress_reason(msg, own))


def prepare_batch(batch: Sequence[Fetched], rules: RuleSet, now: datetime, tz: tzinfo,
                  own: frozenset[str]) -> list[Prepared]:
    return [prepare_one(f, rules, now, tz, own) for f in batch]
