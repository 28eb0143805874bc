"""imap.backlog's first look, decided from the folder's size and newest UID."""

from __future__ import annotations

from mailflow.backlog import FirstLook, first_look


def test_import_takes_everything_up_to_the_newest_uid_as_backlog() -> None:
    look = first_look("import", 3, 41)
    assert (look.backlog_until_uid, look.skipped_until_uid) == (41, 0)
    assert look.message is not None and "3 message(s)" in look.message


def test_skip_starts_after_the_newest_uid() -> None:
    look = first_look("skip", 3, 41)
    assert (look.backlog_until_uid, look.skipped_until_uid) == (0, 41)
    assert look.message is not None and "starting after UID 41" in look.message


def test_acknowledge_treats_it_as_new_mail() -> None:
    look = first_look("acknowledge", 3, 41)
    assert (look.backlog_until_uid, look.skipped_until_uid) == (0, 0)
    assert look.message is not None and "acknowledged" in look.message


def test_an_empty_folder_says_nothing() -> None:
    assert first_look("import", 0, 0) == FirstLook(0, 0, None)
