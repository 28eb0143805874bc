"""UID windows cover the span of new mail exactly once, in order."""

from __future__ import annotations

from mailflow.uidwindows import uid_windows


def test_windows_cover_from_lo_to_below_uidnext() -> None:
    assert list(uid_windows(1, 71, 30)) == [(1, 30), (31, 60), (61, 70)]


def test_nothing_new_is_no_window() -> None:
    assert list(uid_windows(71, 71, 30)) == []


def test_one_short_window() -> None:
    assert list(uid_windows(500, 503, 5000)) == [(500, 502)]
