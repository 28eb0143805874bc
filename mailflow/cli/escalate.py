"""``mailflow tickets escalate ID [--to GROUP] --reason ...``: a person escalates.

Only parsing and printing: the effects are :func:`mailflow.escalation.manual_effects`
(the same as an ``#escalate`` mail command), written by the one writer in one
transaction (:func:`mailflow.desk.act`).
"""

from __future__ import annotations

import click

from mailflow import desk
from mailflow.cli.base import EXIT_CONFIG, _open_db, fail, handles_errors, ticket_arg, ticket_name
from mailflow.cli.tickets import tickets
from mailflow.clock import SystemClock
from mailflow.escalation import manual_effects
from mailflow.ingest import Ingestor
from mailflow.linking import new_token
from mailflow.policies import PoliciesHolder
from mailflow.tickets.referral import TierPolicy


@tickets.command("escalate")
@click.argument("ticket")
@click.option("--to", "group", default=None, help="A tier group to refer it to (default: "
              "the front-line lead decides where).")
@click.option("--reason", required=True, help="Why (kept on the ticket, in the digest).")
@click.pass_context
@handles_errors
def tickets_escalate(ctx: click.Context, ticket: str, group: str | None, reason: str) -> None:
    """Escalate a ticket by hand: recorded as an escalation, the lead (and management)
    told, the customer told; with --to, referred to that group."""
    settings, sessions = _open_db(ctx)
    tid = ticket_arg(settings, ticket)
    policies = PoliciesHolder(settings.rules_path, settings.tz).current
    if policies is None:
        fail("the rules folder has errors: run `mailflow check`", EXIT_CONFIG)
    target = None
    if group is not None:
        target = policies.groups.get(group.strip().lower())
        if target is None:
            known = ", ".join(sorted(policies.groups.names))
            fail(f"--to {group}: no such group (known: {known})", EXIT_CONFIG)
    now = SystemClock().now()
    tier = TierPolicy(settings.support_address, policies.groups, settings.tz,
                      {n: s.label for n, s in settings.severities.items()})
    apply_ctx = Ingestor(settings, sessions).apply_context(now)
    by = desk.actor()
    try:
        desk.act(sessions, tid, lambda t: manual_effects(
            t, target, reason, by, now, policies.groups, tier, new_token(),
            policies.escalation.management), apply_ctx)
    except desk.DeskError as exc:
        fail(str(exc))
    where = f" to {target.name}" if target else ""
    click.echo(f"{ticket_name(settings, sessions, tid)} escalated{where}")
