"""The ``mailflow`` command. Commands call into the modules; no logic lives here.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from mailflow import config as config_mod
from mailflow.classify import RulesError, load_rules
from mailflow.compose import SAMPLE_CONTEXT, Composer, TemplateProblem
from mailflow.config import ConfigError, Settings
from mailflow.resources import default_rules_dir, default_templates_dir
from mailflow.store.db import (
    SchemaError,
    make_engine,
    require_current,
    session_factory,
    upgrade,
)
from mailflow.store.models import (
    OutboxRow,
    QuarantinedMessage,
    StoredMessage,
    Ticket,
    TicketEvent,
)
from mailflow.tickets import OPEN_STATUSES, parse_ref, ref

log = logging.getLogger("mailflow")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_RUNTIME = 1
EXIT_CONFIG = 2


def fail(message: str, code: int = EXIT_RUNTIME) -> NoReturn:
    click.echo(f"mailflow: {message}", err=True)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        path = config_mod.config_path(obj.get("config"))
        try:
            obj["settings"] = config_mod.load(path)
        except ConfigError as exc:
            for p in exc.problems:
                click.echo(p, err=True)
            sys.exit(EXIT_CONFIG)
    settings: Settings = obj["settings"]
    return settings


def handles_errors(fn: F) -> F:
    """Known failures become one clear line and the documented exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            for p in exc.problems:
                click.echo(f"mailflow: {p}", err=True)
            sys.exit(EXIT_CONFIG)
        except RulesError as exc:
            for p in exc.problems:
                click.echo(str(p), err=True)
            sys.exit(EXIT_CONFIG)
        except SchemaError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", "config", envvar=config_mod.CONFIG_ENV,
              type=click.Path(dir_okay=False),
              help="Configuration file (default: $MAILFLOW_CONFIG or ./mailflow.yaml).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="mailflow")
@click.pass_context
def main(ctx: click.Context, config: str | None, verbose: int) -> None:
    """mailflow: an email-driven support mailbox processor."""
    ctx.ensure_object(dict)["config"] = config
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- init / check ------------------------------------------------------------------------

STARTER_CONFIG = """\
# mailflow configuration. Reference: docs/configuration.md
database: sqlite:///mailflow.db
timezone: UTC
support_address: support@example.test
ticket_prefix: SUP

imap:
  host: 127.0.0.1
  port: 993
  security: ssl            # ssl | starttls | none
  username: support@example.test
  password_env: MAILFLOW_IMAP_PASSWORD
  folder: INBOX
  # processed_folder: Processed   # move processed mail here (else: flag it)
  idle: true
  poll_interval: 60s

smtp:
  host: 127.0.0.1
  port: 587
  security: starttls
  username: support@example.test
  password_env: MAILFLOW_SMTP_PASSWORD

acknowledgment:
  max_per_sender_per_hour: 3

rules_dir: rules
templates_dir: templates
"""


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def init(directory: str) -> None:
    """Write a starter mailflow.yaml, rules/ and templates/ into DIRECTORY."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    cfg = target / "mailflow.yaml"
    if cfg.exists():
        fail(f"{cfg} already exists; not overwriting it", EXIT_CONFIG)
    for name, src in (("rules", default_rules_dir()), ("templates", default_templates_dir())):
        dest = target / name
        if dest.exists():
            fail(f"{dest} already exists; not overwriting it", EXIT_CONFIG)
        shutil.copytree(src, dest)
    cfg.write_text(STARTER_CONFIG)
    click.echo(f"wrote {cfg}, {target / 'rules'}/ and {target / 'templates'}/")
    click.echo("next: edit mailflow.yaml, then `mailflow check` and `mailflow db upgrade`")


def check_templates(composer: Composer) -> list[str]:
    problems = []
    for name in composer.names():
        try:
            composer.render(name, SAMPLE_CONTEXT)
        except TemplateProblem as exc:
            problems.append(str(exc))
    return problems


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate configuration, rule files and templates; report every problem."""
    settings = _settings(ctx)
    problems: list[str] = []
    try:
        rs = load_rules(settings.rules_path, display=str(settings.rules_dir))
        click.echo(f"rules: {len(rs.rules)} rules in {len(rs.files)} file(s), "
                   f"version {rs.version}")
    except RulesError as exc:
        problems += [str(p) for p in exc.problems]
    composer = Composer(settings.templates_path)
    tproblems = check_templates(composer)
    problems += tproblems
    if not tproblems:
        click.echo(f"templates: {', '.join(composer.names())} render with sample data")
    for p in problems:
        click.echo(p, err=True)
    if problems:
        sys.exit(EXIT_CONFIG)
    click.echo("configuration OK")


# -- db ------------------------------------------------------------------------------------

@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
@handles_errors
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations."""
    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    try:
        before, after = upgrade(engine)
    except Exception as exc:  # noqa: BLE001 - report, do not dump a traceback at 3 a.m.
        fail(f"migration failed: {exc}")
    finally:
        engine.dispose()
    click.echo(f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})"))


# -- run -----------------------------------------------------------------------------------

@main.command()
@click.option("--once", is_flag=True, help="One full cycle of every folder and the outbox.")
@click.pass_context
@handles_errors
def run(ctx: click.Context, once: bool) -> None:
    """Watch the mailbox, open and update tickets, send mail."""
    from mailflow.app import build
    from mailflow.daemon import run_once, serve
    from mailflow.imap import NETWORK_ERRORS

    settings = _settings(ctx)
    app = build(settings)
    try:
        if once:
            try:
                res = run_once(app)
            except NETWORK_ERRORS as exc:
                fail(f"IMAP {settings.imap.host}:{settings.imap.port}: {exc}")
            d = res.delivery
            click.echo(f"fetched {res.fetched} message(s): "
                       + (", ".join(f"{k} {v}" for k, v in sorted(res.outcomes.items()))
                          or "nothing new"))
            click.echo(f"outbox: sent {len(d.sent)}, retrying {len(d.retrying)}, "
                       f"failed {len(d.failed)}")
        else:
            if not logging.getLogger().isEnabledFor(logging.INFO):
                logging.getLogger().setLevel(logging.INFO)
            asyncio.run(serve(app))
    finally:
        app.close()


# -- tickets ------------------------------------------------------------------------------

def _open_db(ctx: click.Context) -> tuple[Settings, Any]:
    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    try:
        require_current(engine)
    except SchemaError as exc:
        engine.dispose()
        fail(str(exc))
    return settings, session_factory(engine)


def _iso(d: Any) -> str | None:
    return d.isoformat() if d is not None else None


def _ticket_dict(settings: Settings, t: Ticket) -> dict[str, Any]:
    return {
        "ref": ref(settings.ticket_prefix, t.id), "id": t.id, "subject": t.subject,
        "requester": t.requester, "status": t.status, "severity": t.severity,
        "category": t.category, "owner_group": t.owner_group, "tags": t.tags,
        "created_at": _iso(t.created_at), "updated_at": _iso(t.updated_at),
        "reopen_count": t.reopen_count, "linked_ticket": t.linked_ticket_id,
        "rules_version": t.rules_version,
    }


@main.group()
def tickets() -> None:
    """List and inspect tickets."""


@tickets.command("list")
@click.option("--open", "only_open", is_flag=True, help="Only tickets not resolved or closed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=200, show_default=True)
@click.pass_context
@handles_errors
def tickets_list(ctx: click.Context, only_open: bool, as_json: bool, limit: int) -> None:
    """List tickets, newest first."""
    settings, sessions = _open_db(ctx)
    with sessions() as s:
        q = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
        if only_open:
            q = q.where(Ticket.status.in_([str(x) for x in OPEN_STATUSES]))
        rows = s.scalars(q).all()
        quarantined = s.scalar(select(func.count()).select_from(QuarantinedMessage)
                               .where(QuarantinedMessage.released_at.is_(None))) or 0
    if as_json:
        click.echo(json.dumps({"tickets": [_ticket_dict(settings, t) for t in rows],
                               "quarantined": quarantined}, indent=2))
        return
    if not rows:
        click.echo("no tickets")
    for t in rows:
        click.echo(f"{ref(settings.ticket_prefix, t.id):<10} {t.status:<9} sev {t.severity} "
                   f"{t.category:<14} {t.owner_group or '-':<12} {t.requester:<30} "
                   f"{t.subject[:60]}")
    if quarantined:
        click.echo(f"\n{quarantined} message(s) in quarantine: `mailflow quarantine list`")


@tickets.command("show")
@click.argument("ticket")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handles_errors
def tickets_show(ctx: click.Context, ticket: str, as_json: bool) -> None:
    """Show one ticket (SUP-12 or 12) with its messages and event trail."""
    settings, sessions = _open_db(ctx)
    tid = parse_ref(ticket, settings.ticket_prefix)
    if tid is None:
        fail(f"not a ticket reference: {ticket!r} (expected {settings.ticket_prefix}-N)",
             EXIT_CONFIG)
    with sessions() as s:
        t = s.get(Ticket, tid)
        if t is None:
            fail(f"no ticket {ref(settings.ticket_prefix, tid)}")
        data = _ticket_dict(settings, t)
        data["participants"] = sorted(p.address for p in t.participants)
        data["messages"] = [
            {"id": m.id, "direction": m.direction, "from": m.from_addr, "subject": m.subject,
             "received_at": _iso(m.received_at), "message_id": m.message_id,
             "text": m.new_text, "flags": m.flags,
             "attachments": [{"filename": a.filename, "type": a.content_type, "size": a.size,
                              "kept": a.kept} for a in m.attachments]}
            for m in s.scalars(select(StoredMessage).where(StoredMessage.ticket_id == tid)
                               .order_by(StoredMessage.id))
        ]
        data["events"] = [
            {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "summary": e.summary,
             "data": e.data}
            for e in s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == tid)
                               .order_by(TicketEvent.id))
        ]
        data["outbox"] = [
            {"id": o.id, "kind": o.kind, "to": o.recipient, "status": o.status,
             "message_id": o.message_id, "last_error": o.last_error}
            for o in s.scalars(select(OutboxRow).where(OutboxRow.ticket_id == tid)
                               .order_by(OutboxRow.id))
        ]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{data['ref']}  {t.subject}")
    click.echo(f"  status {t.status}, severity {t.severity}, {t.category}, owner "
               f"{t.owner_group}, tags {', '.join(t.tags) or '-'}")
    click.echo(f"  requester {t.requester}; participants {', '.join(data['participants'])}")
    click.echo("\nMessages:")
    for m in data["messages"]:
        click.echo(f"  [{m['received_at']}] {m['direction']} {m['from']}: {m['subject']}")
        for line in (m["text"] or "").splitlines()[:20]:
            click.echo(f"      {line}")
    click.echo("\nEvents:")
    for e in data["events"]:
        click.echo(f"  {e['at']}  {e['kind']:<18} {e['actor']:<28} {e['summary']}")
    if data["outbox"]:
        click.echo("\nMail:")
        for o in data["outbox"]:
            click.echo(f"  #{o['id']} {o['kind']} to {o['to']}: {o['status']}"
                       + (f" ({o['last_error']})" if o["last_error"] else ""))


# -- outbox -------------------------------------------------------------------------------

@main.group()
def outbox() -> None:
    """Inspect and manage mail waiting to be sent."""


@outbox.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include sent and dropped mail.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def outbox_list(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Mail waiting, retrying or failed."""
    settings, sessions = _open_db(ctx)
    with sessions() as s:
        q = select(OutboxRow).order_by(OutboxRow.id)
        if not show_all:
            q = q.where(OutboxRow.status.in_(["pending", "sending", "failed"]))
        rows = s.scalars(q).all()
    items = [{"id": o.id, "ticket": ref(settings.ticket_prefix, o.ticket_id)
              if o.ticket_id else None, "kind": o.kind, "to": o.recipient, "status": o.status,
              "attempts": o.attempts, "next_attempt_at": _iso(o.next_attempt_at),
              "last_error": o.last_error} for o in rows]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("outbox empty")
    for i in items:
        click.echo(f"#{i['id']:<6} {i['status']:<8} {i['kind']:<16} {i['ticket'] or '-':<10} "
                   f"{i['to']:<30} attempts {i['attempts']}"
                   + (f"  {i['last_error']}" if i["last_error"] else ""))


@outbox.command("retry")
@click.argument("row_id", type=int)
@click.pass_context
@handles_errors
def outbox_retry(ctx: click.Context, row_id: int) -> None:
    """Send a failed or waiting mail again now (and lift its recipient's suppression)."""
    from mailflow import outbox as ob
    from mailflow.clock import SystemClock

    _, sessions = _open_db(ctx)
    try:
        row = ob.retry(sessions, row_id, SystemClock().now())
    except ValueError as exc:
        fail(str(exc))
    if row is None:
        fail(f"no outbox row {row_id}")
    click.echo(f"outbox #{row_id} to {row.recipient} queued again")


@outbox.command("drop")
@click.argument("row_id", type=int)
@click.pass_context
@handles_errors
def outbox_drop(ctx: click.Context, row_id: int) -> None:
    """Never send this mail."""
    from mailflow import outbox as ob

    _, sessions = _open_db(ctx)
    try:
        row = ob.drop(sessions, row_id)
    except ValueError as exc:
        fail(str(exc))
    if row is None:
        fail(f"no outbox row {row_id}")
    click.echo(f"outbox #{row_id} to {row.recipient} dropped")


# -- quarantine ---------------------------------------------------------------------------

@main.group()
def quarantine() -> None:
    """Mail that could not become part of a ticket, kept with the reason."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def quarantine_list(ctx: click.Context, as_json: bool) -> None:
    """Quarantined messages, with why."""
    _, sessions = _open_db(ctx)
    with sessions() as s:
        rows = s.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)).all()
    items = [{"id": q.id, "mailbox": q.mailbox, "uid": q.uid, "reason": q.reason,
              "at": _iso(q.created_at)} for q in rows]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("quarantine empty")
    for i in items:
        click.echo(f"#{i['id']:<5} {i['at']}  {i['mailbox']} uid {i['uid']}: {i['reason']}")


@quarantine.command("show")
@click.argument("item_id", type=int)
@click.pass_context
@handles_errors
def quarantine_show(ctx: click.Context, item_id: int) -> None:
    """Write a quarantined message's raw bytes to standard output."""
    _, sessions = _open_db(ctx)
    with sessions() as s:
        q = s.scalars(select(QuarantinedMessage).where(QuarantinedMessage.id == item_id)
                      .options(undefer(QuarantinedMessage.raw))).first()
        if q is None:
            fail(f"no quarantined message {item_id}")
        sys.stdout.buffer.write(q.raw)


# -- rules ----------------------------------------------------------------------------------

@main.group()
def rules() -> None:
    """Try rule files on mail before they go live."""


def _load_candidate(ctx: click.Context, rules_dir: str | None) -> Any:
    settings = _settings(ctx)
    path = Path(rules_dir) if rules_dir else settings.rules_path
    return settings, load_rules(path, display=str(rules_dir or settings.rules_dir))


@rules.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False),
              help="Rule directory to test (default: rules_dir from the config).")
@click.pass_context
@handles_errors
def rules_test(ctx: click.Context, files: tuple[str, ...], rules_dir: str | None) -> None:
    """Classify .eml FILES without side effects and print each rule's verdict."""
    from mailflow.classify import Facts
    from mailflow.clock import SystemClock
    from mailflow.parse import Unparseable, parse

    settings, rs = _load_candidate(ctx, rules_dir)
    click.echo(f"rule set {rs.version}: {len(rs.rules)} rules")
    for name in files:
        try:
            msg = parse(Path(name).read_bytes())
        except Unparseable as exc:
            click.echo(f"\n{name}: not classified: {exc}")
            continue
        when = (msg.date or SystemClock().now()).astimezone(settings.tz)
        out = rs.evaluate(Facts.of(msg, when))
        click.echo(f"\n{name}: {msg.from_addr} - {msg.subject}")
        for hit in out.trace:
            click.echo(f"  {'MATCH' if hit.matched else '  -  '} {hit.rule:<24} {hit.why}")
        click.echo(f"  => severity {out.severity}, {out.category}, owner {out.owner_group}, "
                   f"tags {', '.join(out.tags) or '-'}")


@rules.command("replay")
@click.option("--since", default="30d", show_default=True, help="How far back (90s, 4h, 30d).")
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False),
              help="Candidate rule directory (default: rules_dir from the config).")
@click.pass_context
@handles_errors
def rules_replay(ctx: click.Context, since: str, rules_dir: str | None) -> None:
    """Re-classify stored tickets with a candidate rule set and show what would change."""
    from collections import Counter

    from mailflow.classify import Facts
    from mailflow.clock import SystemClock
    from mailflow.config import parse_duration
    from mailflow.parse import Unparseable, parse

    try:
        window = parse_duration(since)
    except ValueError as exc:
        fail(f"--since: {exc}", EXIT_CONFIG)
    settings, rs = _load_candidate(ctx, rules_dir)
    _, sessions = _open_db(ctx)
    cutoff = SystemClock().now() - window
    hits: Counter[str] = Counter()
    moves: list[str] = []
    total = 0
    with sessions() as s:
        tickets = s.scalars(select(Ticket).where(Ticket.created_at >= cutoff)
                            .order_by(Ticket.id)).all()
        for t in tickets:
            first = s.scalars(select(StoredMessage).where(StoredMessage.ticket_id == t.id,
                                                          StoredMessage.direction == "in")
                              .order_by(StoredMessage.id).limit(1)
                              .options(undefer(StoredMessage.raw))).first()
            if first is None:
                continue
            try:
                msg = parse(first.raw)
            except Unparseable:
                continue
            total += 1
            out = rs.evaluate(Facts.of(msg, first.received_at.astimezone(settings.tz)))
            hits.update(out.matched)
            changes = [f"{k} {a} -> {b}" for k, a, b in (
                ("severity", t.severity, out.severity), ("category", t.category, out.category),
                ("owner", t.owner_group, out.owner_group)) if a != b]
            if changes:
                moves.append(f"  {ref(settings.ticket_prefix, t.id):<10} {'; '.join(changes)}"
                             f"  ({t.subject[:50]})")
    click.echo(f"replayed {total} ticket(s) since {cutoff:%Y-%m-%d %H:%M} with rule set "
               f"{rs.version}")
    click.echo(f"\n{len(moves)} would change:" if moves else "\nno ticket would change")
    for line in moves:
        click.echo(line)
    click.echo("\nhits per rule:")
    for r in rs.rules:
        click.echo(f"  {hits[r.name]:>6}  {r.name}" + ("   (never matches)" if not hits[r.name]
                                                       else ""))


# -- demo -------------------------------------------------------------------------------------

@main.command()
@click.option("--keep", is_flag=True, help="Leave the mail stack running afterwards.")
@click.argument("directory", default="demo", type=click.Path(file_okay=False))
def demo(directory: str, keep: bool) -> None:
    """Run the main job on a local mail stack with example customer mail."""
    from mailflow.demo import run_demo

    sys.exit(run_demo(Path(directory), keep=keep))


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
