"""Log lines: JSON objects with mailbox and ticket where known; reply tokens cut out."""

from __future__ import annotations

import json
import logging
import threading

from mailflow.logsetup import JsonFormatter, RedactingFormatter, redact


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("mailflow.imap", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_line_has_time_level_event_and_mailbox_from_the_watcher_thread() -> None:
    out: list[str] = []

    def in_watcher() -> None:
        out.append(JsonFormatter().format(_record("%s: fetched %d", "k", 3)))

    t = threading.Thread(target=in_watcher, name="imap:support@example.test/INBOX")
    t.start()
    t.join()
    obj = json.loads(out[0])
    assert obj["level"] == "info" and obj["event"] == "k: fetched 3"
    assert obj["mailbox"] == "support@example.test/INBOX" and "ticket" not in obj
    assert obj["time"].endswith("+00:00") and "\n" not in out[0]


def test_json_line_takes_ticket_and_mailbox_from_extra() -> None:
    obj = json.loads(JsonFormatter().format(_record("x", ticket=12, mailbox="a/INBOX")))
    assert obj["ticket"] == 12 and obj["mailbox"] == "a/INBOX"


def test_reply_tokens_never_reach_the_log() -> None:
    line = "sent to support+12.K7QX2M9B4HRD@example.test and bob+news@example.test"
    assert redact(line) == "sent to support+12.…@example.test and bob+news@example.test"
    text = RedactingFormatter("%(message)s").format(_record("%s", line))
    assert "K7QX2M9B4HRD" not in text
    assert "K7QX2M9B4HRD" not in JsonFormatter().format(_record("%s", line))
