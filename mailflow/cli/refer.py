"""``mailflow tickets refer ID GROUP --reason ...``: a person refers a ticket.

Only parsing and printing: the effects are :func:`mailflow.tickets.referral.
refer_by_person` (the same as a ``#refer`` mail command), written by the one writer in
one transaction (:func:`mailflow.desk.act`).
"""

from __future__ import annotations

import click

from mailflow import desk
from mailflow.classify.groups import load_groups
from mailflow.classify.problems import RulesError
from mailflow.cli.base import EXIT_CONFIG, _open_db, fail, handles_errors, ticket_arg, ticket_name
from mailflow.cli.tickets import tickets
from mailflow.clock import SystemClock
from mailflow.ingest import Ingestor
from mailflow.linking import new_token
from mailflow.tickets.referral import ReferralRefused, TierPolicy, refer_by_person


@tickets.command("refer")
@click.argument("ticket")
@click.argument("group")
@click.option("--reason", required=True, help="Why (kept on the ticket, told to the group).")
@click.pass_context
@handles_errors
def tickets_refer(ctx: click.Context, ticket: str, group: str, reason: str) -> None:
    """Refer a ticket to a tier group: referral mail to the group, status update to the
    customer, owner and status follow."""
    settings, sessions = _open_db(ctx)
    tid = ticket_arg(settings, ticket)
    try:
        groups = load_groups(settings.rules_path)
    except RulesError as exc:
        fail("; ".join(str(p) for p in exc.problems), EXIT_CONFIG)
    now = SystemClock().now()
    policy = TierPolicy(settings.support_address, groups, settings.tz,
                        {n: s.label for n, s in settings.severities.items()})
    by = desk.actor()
    apply_ctx = Ingestor(settings, sessions).apply_context(now)
    try:
        desk.act(sessions, tid, lambda t: refer_by_person(t, group, reason, by, new_token(),
                                                         now, policy), apply_ctx)
    except (desk.DeskError, ReferralRefused) as exc:
        fail(str(exc))
    click.echo(f"{ticket_name(settings, sessions, tid)} referred to {group.strip().lower()}")
