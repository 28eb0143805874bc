"""``mailflow status``: how mailflow is doing, for a person (or ``--json`` for a script).

The same facts as ``/healthz``: from the database (each mailbox's last commit, the
outbox backlog and its oldest due mail, the last digest sent) and, where
``metrics.listen`` is set and the daemon answers there, from the daemon itself (each
mailbox connected or failing, the sender). Exit 1 when the daemon says something is
wrong, or is configured to answer and does not.

Registered on ``main`` by importing this module at the end of ``mailflow.cli``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from mailflow.cli import main
from mailflow.cli.base import _iso, _open_db, handles_errors
from mailflow.opsstatus import StatusReport, gather


def _lines(r: StatusReport, now: datetime) -> list[str]:
    out = []
    if r.daemon is not None:
        state = "ok" if r.daemon.get("status") == "ok" else "FAILING"
        out.append(f"daemon: {state} (HTTP {r.daemon_status})")
        out += [f"  problem: {p}" for p in r.daemon.get("problems", [])]
        out += [f"  note: {n}" for n in r.daemon.get("notes", [])]
        for m in r.daemon.get("mailboxes", []):
            how = ("owned by another process" if not m["owned"] else
                   "connected" if m["connected"] else "not connected")
            out.append(f"  mailbox {m['name']}: {how}; last good poll "
                       f"{m['last_success'] or 'none yet'}"
                       + (f"; last error {m['last_error_at']}: {m['last_error']}"
                          if m.get("last_error") else ""))
        s = r.daemon.get("sender") or {}
        if s:
            how = f"failing since {s['failing_since']}" if s.get("down") else "ok"
            err = f"; last error: {s['last_error']}" if s.get("last_error") else ""
            out.append(f"  sender: {how}{err}")
    elif r.daemon_problem:
        out.append(f"daemon: {r.daemon_problem}")
    else:
        out.append("daemon: no listener configured (metrics.listen); database view only")
    out.append("database:")
    if not r.checkpoints:
        out.append("  no mailbox has committed mail yet")
    for c in r.checkpoints:
        ago = int((now - c.last_commit).total_seconds())
        out.append(f"  mailbox {c.mailbox}: last commit {_iso(c.last_commit)} "
                   f"({ago}s ago), UID {c.last_uid}")
    d = r.outbox.depth
    oldest = r.outbox.oldest_due
    out.append(f"  outbox: {d.get('pending', 0)} pending, {d.get('sending', 0)} sending, "
               f"{d.get('failed', 0)} failed; oldest due "
               + (f"{_iso(oldest)} ({int((now - oldest).total_seconds())}s ago)"
                  if oldest else "none"))
    out.append(f"  last digest sent: {_iso(r.outbox.last_digest) or 'never'}")
    return out


def _as_dict(r: StatusReport) -> dict[str, Any]:
    return {
        "daemon": r.daemon, "daemon_status": r.daemon_status, "daemon_problem": r.daemon_problem,
        "mailboxes": [{"mailbox": c.mailbox, "last_commit": _iso(c.last_commit),
                       "last_uid": c.last_uid} for c in r.checkpoints],
        "outbox": {"depth": r.outbox.depth, "oldest_due": _iso(r.outbox.oldest_due)},
        "last_digest": _iso(r.outbox.last_digest),
    }


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handles_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """How mailflow is doing: mailboxes, outbox, digest, and the daemon's own health."""
    settings, sessions = _open_db(ctx)
    now = datetime.now(UTC)
    report = gather(sessions, settings.metrics.listen, now)
    if as_json:
        click.echo(json.dumps(_as_dict(report), indent=1))
    else:
        click.echo("\n".join(_lines(report, now)))
    failing = (report.daemon is not None and report.daemon.get("status") != "ok") or \
        report.daemon_problem is not None
    ctx.exit(1 if failing else 0)
