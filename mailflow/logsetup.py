"""Log output for people (default) or for a log collector (``--log-format json``).

JSON is one object per line: ``time`` (UTC, ISO 8601), ``level``, ``event`` (the
message), ``logger``, and ``mailbox`` and ``ticket`` where known: from the record's
``extra`` or, for ``mailbox``, from the watcher thread's name (``imap:<key>``), so the
existing log lines need no change. A traceback, when there is one, is ``exc``.

Whatever the format, reply tokens are cut out of addresses (``support+12.AB34...@``
becomes ``support+12.…@``): the token is what lets a mail act on a ticket, and logs
travel further than the database. Secrets and message bodies are never passed to the
log in the first place (see docs/operations.md).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
# support+12.K7QX2M9B4HRD@example.com: the ticket number stays, the token goes.
_TOKEN = re.compile(r"(\+\d+\.)[A-Za-z0-9]{6,}(?=@)")


def redact(text: str) -> str:
    return _TOKEN.sub(r"\1…", text)


def _mailbox(record: logging.LogRecord) -> str | None:
    value = getattr(record, "mailbox", None)
    if value:
        return str(value)
    name = record.threadName or threading.current_thread().name
    return name[5:] if name.startswith("imap:") else None


class RedactingFormatter(logging.Formatter):
    """The usual text lines, tokens cut out."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring for the keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": redact(record.getMessage()),
            "logger": record.name,
        }
        mailbox = _mailbox(record)
        if mailbox:
            out["mailbox"] = mailbox
        ticket = getattr(record, "ticket", None)
        if ticket is not None:
            out["ticket"] = ticket
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: int, fmt: str = "text") -> None:
    """Set up the root logger for the whole process (the CLI's ``main``).

    Like ``logging.basicConfig``, it leaves a root logger alone that someone else set up
    (pytest's capture, an embedding program); a handler of ours from an earlier call
    is replaced.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_mailflow", False):
            root.removeHandler(h)
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(TEXT_FORMAT))
    handler._mailflow = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
