"""``mailflow tickets``: list and inspect tickets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click

from mailflow.accounts import ticket_ref
from mailflow.cli.base import (
    EXIT_CONFIG,
    _iso,
    _open_db,
    fail,
    handles_errors,
    ticket_arg,
    ticket_name,
)
from mailflow.cli.tables import Col, emit_json, local_time, print_table
from mailflow.clock import SystemClock
from mailflow.config import Settings, parse_duration
from mailflow.store import queries
from mailflow.store.models import Ticket
from mailflow.tickets import Status


def _parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _ticket_dict(settings: Settings, t: Ticket) -> dict[str, Any]:
    return {
        "ref": ticket_ref(settings, t.id, t.desk), "id": t.id, "subject": t.subject,
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
    due_before = None
    if overdue or due_within:
        try:
            span = parse_duration(due_within) if due_within else timedelta(0)
        except ValueError as exc:
            fail(f"--due-within: {exc}", EXIT_CONFIG)
        due_before = SystemClock().now() + span
    f = queries.TicketFilter(
        only_open=only_open, statuses=statuses, owner=owner, severities=severities,
        requester=requester,
        since=since_cutoff(since, SystemClock().now(), settings.tz) if since else None,
        due_before=due_before)
    with sessions() as s:
        rows = queries.list_tickets(s, f, limit)
        quarantined = queries.quarantined_count(s)
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
    tid = ticket_arg(settings, ticket)
    with sessions() as s:
        found = queries.ticket_detail(s, tid)
        if found is None:
            fail(f"no ticket {ticket_name(settings, sessions, tid)}")
        t, detail = found
        data = {**_ticket_dict(settings, t), **detail}
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
    if data["referrals"]:
        click.echo("\nReferrals:")
        for r in data["referrals"]:
            when = local_time(_parse_iso(r["created"]), settings.tz)
            state = ("ended" if r["ended"] else "accepted" if r["accepted"] else
                     "not accepted yet")
            extra = ""
            if r["eta"]:
                extra += f", ETA {local_time(_parse_iso(r['eta']), settings.tz)}"
            if r["next_update_due"]:
                extra += (f", next update by "
                          f"{local_time(_parse_iso(r['next_update_due']), settings.tz)}")
            if r["eta_missing"]:
                extra += ", ETA MISSING (accepted without #eta or #next-update)"
            if r["case_ref"]:
                extra += f", their case {r['case_ref']}"
            click.echo(f"  {when}  {r['group']}: {state}{extra}")
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
