"""``mailflow tickets``: list and inspect tickets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import func, select

from mailflow.cli.base import EXIT_CONFIG, _iso, _open_db, fail, handles_errors
from mailflow.cli.tables import Col, emit_json, local_time, print_table
from mailflow.clock import SystemClock
from mailflow.config import Settings, parse_duration
from mailflow.store.models import (
    EscalationStep,
    OutboxRow,
    QuarantinedMessage,
    StoredMessage,
    Ticket,
    TicketClock,
    TicketEvent,
)
from mailflow.tickets import OPEN_STATUSES, Status, parse_ref, ref


def _parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _ticket_dict(settings: Settings, t: Ticket) -> dict[str, Any]:
    return {
        "ref": ref(settings.ticket_prefix, t.id), "id": t.id, "subject": t.subject,
        "requester": t.requester, "status": t.status, "severity": t.severity,
        "category": t.category, "owner_group": t.owner_group, "tags": t.tags,
        "created_at": _iso(t.created_at), "updated_at": _iso(t.updated_at),
        "reopen_count": t.reopen_count, "linked_ticket": t.linked_ticket_id,
        "rules_version": t.rules_version,
    }


@click.group()
def tickets() -> None:
    """List and inspect tickets."""


STATUS_STYLES = {"open": "green", "referred": "cyan", "waiting": "yellow",
                 "resolved": "dim", "closed": "dim"}
TICKET_COLUMNS = [Col("Ticket", "ref", style="bold"), Col("Status", "status"),
                  Col("Sev", "severity", justify="right"), Col("Category", "category", 14),
                  Col("Owner", "owner_group", 14), Col("Requester", "requester", 32),
                  Col("Updated", "updated"), Col("Subject", "subject", 60)]


def since_cutoff(text: str, now: datetime, tz: ZoneInfo) -> datetime:
    """``--since``: a duration back from now (``7d``, ``4h``) or a date or date and time
    in the configured zone (``2026-11-01``, ``2026-11-01T08:00``)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("a duration such as 7d or 4h, or a date such as "
                                 f"2026-11-01 (got {text!r})", param_hint="--since") from None
    return when if when.tzinfo else when.replace(tzinfo=tz)


@tickets.command("list")
@click.option("--open", "only_open", is_flag=True, help="Only tickets not resolved or closed.")
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              type=click.Choice([s.value for s in Status]), help="Only this status "
              "(repeat for several).")
@click.option("--owner", help="Only tickets owned by this tier group ('-' for none).")
@click.option("--severity", "severities", multiple=True, type=click.IntRange(1, 3),
              help="Only this severity (repeat for several).")
@click.option("--requester", help="Only tickets from this address, or from @domain.")
@click.option("--since", help="Only tickets opened since: 7d, 4h or 2026-11-01.")
@click.option("--overdue", is_flag=True, help="Only open tickets with a service-level clock "
              "past its due time.")
@click.option("--due-within", "due_within", metavar="DURATION",
              help="Only open tickets with a clock due within: 30m, 1h, 1d (overdue ones too).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=200, show_default=True)
@click.pass_context
@handles_errors
def tickets_list(ctx: click.Context, only_open: bool, statuses: tuple[str, ...],
                 owner: str | None, severities: tuple[int, ...], requester: str | None,
                 since: str | None, overdue: bool, due_within: str | None, as_json: bool,
                 limit: int) -> None:
    """List tickets, newest first."""
    settings, sessions = _open_db(ctx)
    q = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
    if overdue or due_within:
        try:
            span = parse_duration(due_within) if due_within else timedelta(0)
        except ValueError as exc:
            fail(f"--due-within: {exc}", EXIT_CONFIG)
        # The clocks the scheduler stored: no clock is recomputed here.
        due = (select(TicketClock.ticket_id)
               .where(TicketClock.stopped_at.is_(None), TicketClock.due_at.is_not(None),
                      TicketClock.due_at <= SystemClock().now() + span))
        q = q.where(Ticket.id.in_(due),
                    Ticket.status.in_([str(x) for x in OPEN_STATUSES]))
    if only_open:
        q = q.where(Ticket.status.in_([str(x) for x in OPEN_STATUSES]))
    if statuses:
        q = q.where(Ticket.status.in_(statuses))
    if owner is not None:
        q = q.where(Ticket.owner_group.is_(None) if owner in ("-", "none")
                    else Ticket.owner_group == owner)
    if severities:
        q = q.where(Ticket.severity.in_(severities))
    if requester:
        who = requester.strip().lower()
        q = q.where(func.lower(Ticket.requester).like(f"%{who}") if who.startswith("@")
                    else func.lower(Ticket.requester) == who)
    if since:
        q = q.where(Ticket.created_at >= since_cutoff(since, SystemClock().now(),
                                                      settings.tz))
    with sessions() as s:
        rows = s.scalars(q).all()
        quarantined = s.scalar(select(func.count()).select_from(QuarantinedMessage)
                               .where(QuarantinedMessage.released_at.is_(None))) or 0
    if as_json:
        emit_json([_ticket_dict(settings, t) for t in rows], quarantined=quarantined)
        return
    print_table(TICKET_COLUMNS,
                [{**_ticket_dict(settings, t), "updated": local_time(t.updated_at, settings.tz)}
                 for t in rows], "no tickets", STATUS_STYLES)
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
        data["clocks"] = [
            {"kind": c.kind, "episode": c.episode, "state": c.state, "policy": c.policy,
             "started": _iso(c.started_at), "due": _iso(c.due_at),
             "stopped": _iso(c.stopped_at)}
            for c in s.scalars(select(TicketClock).where(TicketClock.ticket_id == tid)
                               .order_by(TicketClock.kind, TicketClock.episode))
        ]
        data["escalations"] = [
            {"chain": e.chain, "step": e.step, "clock": e.clock, "episode": e.episode,
             "fired_at": _iso(e.fired_at), "late": e.late}
            for e in s.scalars(select(EscalationStep).where(EscalationStep.ticket_id == tid)
                               .order_by(EscalationStep.fired_at))
        ]
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(f"{data['ref']}  {t.subject}")
    click.echo(f"  status {t.status}, severity {t.severity}, {t.category}, owner "
               f"{t.owner_group}, tags {', '.join(t.tags) or '-'}")
    click.echo(f"  requester {t.requester}; participants {', '.join(data['participants'])}")
    click.echo("\nMessages:")
    for m in data["messages"]:
        at = local_time(_parse_iso(m["received_at"]), settings.tz, seconds=True)
        click.echo(f"  [{at}] {m['direction']} {m['from']}: {m['subject']}")
        for line in (m["text"] or "").splitlines()[:20]:
            click.echo(f"      {line}")
    click.echo("\nEvents:")
    for e in data["events"]:
        at = local_time(_parse_iso(e["at"]), settings.tz, seconds=True)
        click.echo(f"  {at}  {e['kind']:<18} {e['actor']:<28} {e['summary']}")
    if data["clocks"]:
        click.echo("\nService levels:")
        for c in data["clocks"]:
            due = local_time(_parse_iso(c["due"]), settings.tz) if c["due"] else "-"
            click.echo(f"  {c['kind']:<15} #{c['episode']} {c['state']:<9} due {due} "
                       f"(policy {c['policy']})")
    if data["escalations"]:
        click.echo("\nEscalation steps fired:")
        for st in data["escalations"]:
            at = local_time(_parse_iso(st["fired_at"]), settings.tz, seconds=True)
            click.echo(f"  {at}  {st['chain']}/{st['step']} ({st['clock']} "
                       f"#{st['episode']}){'  [late]' if st['late'] else ''}")
    if data["outbox"]:
        click.echo("\nMail:")
        for o in data["outbox"]:
            click.echo(f"  #{o['id']} {o['kind']} to {o['to']}: {o['status']}"
                       + (f" ({o['last_error']})" if o["last_error"] else ""))
