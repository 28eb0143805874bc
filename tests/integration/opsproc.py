"""Helpers for the operations tests: ``mailflow run`` as a real process, its HTTP
listener, and what arrived in a mailbox, counted by header."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, TypeVar

from mailflow.mailstack import PASSWORD, MailStack

RULES = Path(__file__).parents[2] / "rules"
T = TypeVar("T")


def write_config(stack: MailStack, db: str, tmp: Path, extra: str = "",
                 imap_extra: str = "", name: str = "mailflow.yaml") -> Path:
    """A config for the stack; ``imap_extra`` lines go under ``imap:`` (2-space indent)."""
    text = stack.settings_yaml(db, f"rules_dir: {RULES}\n" + extra)
    text = text.replace("  backlog: acknowledge\n",
                        "  backlog: acknowledge\n  poll_interval: 1s\n" + imap_extra, 1)
    cfg = tmp / name
    cfg.write_text(text)
    return cfg


def env() -> dict[str, str]:
    return dict(os.environ, MAILFLOW_IMAP_PASSWORD=PASSWORD)


def mailflow(cfg: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mailflow", "--config", str(cfg), *args]


def upgrade(cfg: Path) -> None:
    subprocess.run(mailflow(cfg, "db", "upgrade"), check=True, env=env(), capture_output=True)


class Daemon:
    """``mailflow run`` in the background, its output in a log file."""

    def __init__(self, cfg: Path, log: Path, *args: str):
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(mailflow(cfg, *args, "run"), env=env(),
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the exit code (killed if it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(check: Callable[[], T], timeout: float, step: float = 0.2,
               what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    status, body = http_get(f"http://127.0.0.1:{port}/healthz")
    return status, (json.loads(body) if body else {})


def metric(text: str, name: str) -> float:
    """The value of one sample line (``name`` with its labels, as exposed)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def headers(stack: MailStack, user: str, *names: str) -> list[dict[str, str]]:
    """The named headers of every message in ``user``'s INBOX (one FETCH)."""
    wanted = " ".join(n.upper() for n in names)
    with stack.imap(user) as c:
        c.select_folder("INBOX", readonly=True)
        uids = c.search("ALL")
        if not uids:
            return []
        key = f"BODY[HEADER.FIELDS ({wanted})]".encode()
        data = c.fetch(uids, [f"BODY.PEEK[HEADER.FIELDS ({wanted})]"])
    parser = BytesHeaderParser()
    out = []
    for uid in sorted(data):
        msg = parser.parsebytes(data[uid][key])
        out.append({n: str(msg.get(n, "")).strip() for n in names})
    return out


def backlog(stack: MailStack, n: int, senders: int, tag: str, first: int = 0) -> list[str]:
    """``n`` customer mails in the support INBOX from ``senders`` plus-addresses of the
    customer, numbered from ``first`` (each sender writes at most ceil(n / senders) of
    them: keep it within the acknowledgment limit per hour); their Message-IDs."""
    from tests.conftest import SUPPORT
    from tests.mails import mail

    ids = [f"{tag}-{i}@customer.test" for i in range(n)]
    raws = [mail(sender=f"Customer <customer+{first + i % senders}@example.test>",
                 subject=f"{tag} case {i}", message_id=f"<{mid}>")
            for i, mid in enumerate(ids)]
    with stack.imap(SUPPORT) as c:
        for i in range(0, n, 250):
            c.multiappend("INBOX", raws[i : i + 250])
    return ids


def stored_once(db_url: str, ids: list[str]) -> dict[str, int]:
    """Message-ID -> the ticket holding it, asserting each is stored exactly once."""
    from sqlalchemy import create_engine, text

    eng = create_engine(db_url)
    try:
        with eng.connect() as c:
            rows = c.execute(text("SELECT message_id, ticket_id FROM messages "
                                  "WHERE direction = 'in'")).all()
    finally:
        eng.dispose()
    seen: dict[str, int] = {}
    for mid, ticket in rows:
        key = (mid or "").strip("<>")
        assert key not in seen, f"{key} stored twice"
        assert ticket is not None, f"{key} is in no ticket"
        seen[key] = ticket
    missing = set(ids) - set(seen)
    assert not missing, f"{len(missing)} message(s) lost, e.g. {sorted(missing)[:3]}"
    return seen


def acks_once(stack: MailStack, ids: list[str]) -> None:
    """Every customer mail got exactly one acknowledgment (by its Message-ID, answering
    the customer's by In-Reply-To)."""
    from tests.conftest import CUSTOMER

    got = headers(stack, CUSTOMER, "Message-ID", "In-Reply-To")
    mids = [h["Message-ID"] for h in got]
    dupes = len(mids) - len(set(mids))
    assert dupes == 0, f"{dupes} acknowledgment(s) arrived twice"
    answered = [h["In-Reply-To"].strip("<>") for h in got]
    assert len(answered) == len(set(answered)), "a customer mail was acknowledged twice"
    assert set(answered) == set(ids), f"{len(set(ids) - set(answered))} not acknowledged"


def count(db_url: str, sql: str) -> int:
    from sqlalchemy import create_engine, text

    eng = create_engine(db_url)
    try:
        with eng.connect() as c:
            return int(c.execute(text(sql)).scalar() or 0)
    except Exception:  # noqa: BLE001 - the schema may not exist yet
        return 0
    finally:
        eng.dispose()
