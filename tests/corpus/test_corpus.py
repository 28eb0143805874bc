"""Real-world mail from ../shared/corpus: nothing crashes, nothing is lost.

Skipped cleanly where the corpus is absent (it is not part of this repository).
"""

from __future__ import annotations

import csv
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from mailflow.autoresponse import suppress_reason
from mailflow.ingest import Fetched
from mailflow.parse import Unparseable, decode_text, parse

CORPUS = Path(__file__).parents[2].parent / "shared" / "corpus"
pytestmark = pytest.mark.skipif(not (CORPUS / "INDEX.tsv").is_file(),
                                reason=f"corpus not found at {CORPUS}")


def _index() -> list[dict[str, str]]:
    with open(CORPUS / "INDEX.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_every_corpus_message_parses_like_policy_default() -> None:
    rows = _index()
    outcomes: Counter[str] = Counter()
    subject_diff = []
    for row in rows:
        raw = (CORPUS / row["path"]).read_bytes()
        try:
            m = parse(raw)
        except Unparseable:
            outcomes["unparseable"] += 1
            continue
        outcomes["parsed"] += 1
        try:
            ref = message_from_bytes(raw, policy=default)
            want = decode_text(str(ref["Subject"] or ""))
        except Exception:  # noqa: BLE001 - policy.default itself fails on some mail
            outcomes["policy.default failed"] += 1
            continue
        if want != m.subject and "\ufffd" not in want:
            subject_diff.append((row["path"], want, m.subject))
        if row["primary"] == "auto-reply":
            outcomes["auto-reply recognised" if suppress_reason(m, frozenset())
                     else "auto-reply missed"] += 1
    print(f"\ncorpus: {len(rows)} messages: {dict(outcomes)}; subjects differing from "
          f"policy.default: {len(subject_diff)}")
    for d in subject_diff[:10]:
        print("  ", d)
    assert outcomes["parsed"] + outcomes["unparseable"] == len(rows)
    assert len(subject_diff) <= len(rows) * 0.01
    assert outcomes["auto-reply missed"] == 0


def test_corpus_ingested_nothing_lost(sqlite_url: str, make_app) -> None:
    app = make_app(None, sqlite_url)
    rows = _index()
    batch = [Fetched(i + 1, (CORPUS / r["path"]).read_bytes()) for i, r in enumerate(rows)]
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)
    total: Counter[str] = Counter()
    for i in range(0, len(batch), 200):
        res = app.ingestor.ingest("corpus", 1, batch[i:i + 200], app.rules.current, now)
        total.update(res.outcomes)
        assert len(res.done_uids) == len(batch[i:i + 200])
    print(f"\ncorpus ingest outcomes: {dict(total)}")
    assert sum(total.values()) == len(rows)
    # Bounces in the corpus are never answered (no ack for any of them).
    from sqlalchemy import select

    from mailflow.store.models import OutboxRow

    with app.sessions() as s:
        recipients = set(s.scalars(select(OutboxRow.recipient)))
    assert not any(r.startswith(("mailer-daemon", "postmaster")) for r in recipients)


def test_fast_structure_path_equals_full_parser_on_the_corpus() -> None:
    same = 0
    for row in _index():
        raw = (CORPUS / row["path"]).read_bytes()
        try:
            full = parse(raw, fast=False)
        except Unparseable:
            with pytest.raises(Unparseable):
                parse(raw)
            continue
        fast = parse(raw)
        assert (fast.text, fast.new_text, fast.attachments, fast.subject, fast.from_addr,
                fast.dedupe_key, fast.report) == \
            (full.text, full.new_text, full.attachments, full.subject, full.from_addr,
             full.dedupe_key, full.report), row["path"]
        same += 1
    assert same > 1000


def test_parse_worker_returns_what_inline_parsing_does_for_every_corpus_message() -> None:
    """Real mail through the pickling boundary: odd charsets, surrogates, huge parts."""
    from mailflow.classify import load_rules
    from mailflow.ingest import prepare_batch
    from mailflow.preparepool import PreparePool

    rules = load_rules(Path(__file__).parents[2] / "rules")
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    batch = [Fetched(i + 1, (CORPUS / row["path"]).read_bytes(), now)
             for i, row in enumerate(_index())]
    pool = PreparePool(1, UTC, frozenset({"support@example.test"}))
    try:
        for i in range(0, len(batch), 200):
            chunk = batch[i:i + 200]
            got = pool.result(pool.submit(chunk, rules, now), chunk, rules, now)
            assert got == prepare_batch(chunk, rules, now, UTC, frozenset({"support@example.test"}))
        assert pool.failures == 0  # every batch really came from the worker
    finally:
        pool.close()
