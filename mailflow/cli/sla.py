"""``mailflow sla``: where each promise stands, and why.

``sla explain ID`` shows how every due time of a ticket was computed (policy, calendar,
pauses, calendar gaps), from the event trail as it is now. ``sla overdue`` and ``sla
due --within 1h`` list what the scheduler stored (``ticket_clocks``), without
recomputing anything.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, cast

import click
from sqlalchemy import select

from mailflow.cli.base import EXIT_CONFIG, _open_db, fail, handles_errors, ticket_arg, ticket_name
from mailflow.config import parse_duration
from mailflow.store import queries
from mailflow.store.models import EscalationStep
from mailflow.tickets import ref


@click.group("sla")
def sla() -> None:
    """Service-level clocks and escalations."""


@sla.command("explain")
@click.argument("ticket")
@click.pass_context
@handles_errors
def sla_explain(ctx: click.Context, ticket: str) -> None:
    """How each due time of TICKET was computed, and which steps fired."""
    from mailflow.clock import SystemClock
    from mailflow.policies import PoliciesHolder
    from mailflow.scheduler import clocks_of
    from mailflow.slaexplain import explain

    settings, sessions = _open_db(ctx)
    tid = ticket_arg(settings, ticket)
    name = ticket_name(settings, sessions, tid)
    policies = PoliciesHolder(settings.rules_path, settings.tz).current
    if policies is None:
        fail("sla.yaml, escalation.yaml or groups.yaml has errors: run `mailflow check`")
    now = SystemClock().now()
    with sessions() as s:
        tc = clocks_of(s, settings, tid, now, policies)
        if tc is None:
            fail(f"{name}: no such ticket")
        steps = s.scalars(select(EscalationStep).where(EscalationStep.ticket_id == tid)
                          .order_by(EscalationStep.fired_at)).all()
    click.echo(f"{name}:")
    for line in explain(tc, now, settings.tz):
        click.echo(f"  {line}")
    if steps:
        click.echo("  escalation steps fired:")
        for st in steps:
            when = st.fired_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M:%S %Z")
            click.echo(f"    {when}  {st.chain}/{st.step} ({st.clock} #{st.episode})"
                       + ("  [late]" if st.late else ""))


def _listing(ctx: click.Context, within: timedelta | None, as_json: bool) -> None:
    from mailflow.clock import SystemClock

    settings, sessions = _open_db(ctx)
    now = SystemClock().now()
    limit = now + within if within is not None else now
    with sessions() as s:
        rows = queries.due_clocks(s, limit)
    out: list[dict[str, Any]] = [
        {"ticket": ref(settings.ticket_prefix, c.ticket_id), "clock": c.kind,
         "due": c.due_at.isoformat() if c.due_at else None, "state": c.state,
         "overdue": bool(c.due_at and c.due_at < now), "owner": c.owner_group,
         "severity": c.severity, "status": status, "subject": subject}
        for c, subject, status in rows]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if not out:
        click.echo("nothing " + ("overdue" if within is None else "due in that time"))
        return
    for r in out:
        due = cast(datetime, rows[out.index(r)][0].due_at)  # due_clocks: due_at is set
        when = due.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M %Z")
        flag = "OVERDUE" if r["overdue"] else "due"
        click.echo(f"{r['ticket']:>10}  {r['clock']:<15} {flag} {when}  sev {r['severity']}  "
                   f"{r['owner'] or '-':<12} {r['subject'][:50]}")


@sla.command("overdue")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def sla_overdue(ctx: click.Context, as_json: bool) -> None:
    """Open tickets with a clock past its due time."""
    _listing(ctx, None, as_json)


@sla.command("due")
@click.option("--within", default="1h", show_default=True, help="e.g. 30m, 1h, 1d")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def sla_due(ctx: click.Context, within: str, as_json: bool) -> None:
    """Open tickets with a clock due within the given time (overdue ones included)."""
    try:
        span = parse_duration(within)
    except ValueError as exc:
        fail(f"--within: {exc}", EXIT_CONFIG)
    _listing(ctx, span, as_json)
