"""The digest maps the SQLite file for its month of reads, and unmaps it after: the
connection goes back to the daemon's pool, where a mapped database would count in the
daemon's resident memory from then on."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from mailflow.digest.queries import large_reads
from mailflow.store.db import make_engine, session_factory


def test_the_mapping_is_undone_after_the_reads(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    sessions = session_factory(engine)
    try:
        with sessions() as s:
            with large_reads(s):
                assert s.execute(text("PRAGMA mmap_size")).scalar() > 0  # capped by the build
            assert s.execute(text("PRAGMA mmap_size")).scalar() == 0
            assert s.execute(text("PRAGMA temp_store")).scalar() == 0
    finally:
        engine.dispose()
