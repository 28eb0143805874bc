"""``mailflow check``: the files, and everything ``run`` would trip over.

Files first (configuration, rule files, templates: every problem with its file:line),
then what only shows at run time (credentials, database driver, database and schema),
and with ``--connect`` the servers themselves. The checks live in
:mod:`mailflow.preflight`; this module prints them.
"""

from __future__ import annotations

import sys

import click

from mailflow import preflight
from mailflow.accounts import unknown_owners
from mailflow.classify import RulesError, load_rules
from mailflow.cli.base import EXIT_CONFIG, EXIT_RUNTIME, _settings, handles_errors
from mailflow.cli.init import check_templates
from mailflow.compose import Composer
from mailflow.explain import file_problem


@click.command()
@click.option("--connect", is_flag=True,
              help="Also log in to IMAP (selecting each folder) and SMTP (EHLO, login).")
@click.pass_context
@handles_errors
def check(ctx: click.Context, connect: bool) -> None:
    """Validate configuration, rule files, templates, credentials and the database;
    report every problem. Exit 2 for configuration problems, 1 for the rest."""
    settings = _settings(ctx)
    problems: list[str] = []
    try:
        rs = load_rules(settings.rules_path, display=str(settings.rules_dir))
        click.echo(f"rules: {len(rs.rules)} rules in {len(rs.files)} file(s), "
                   f"version {rs.version}")
        problems += unknown_owners(settings, rs.groups)
        for m in settings.mailboxes:
            click.echo(f"mailbox {m.name}: {m.support_address}, tickets "
                       f"{m.ticket_prefix or settings.ticket_prefix}-N")
    except RulesError as exc:
        problems += [str(p) for p in exc.problems]
    except OSError as exc:
        problems.append(file_problem(exc) or str(exc))
    composer = Composer(settings.templates_path)
    tproblems = check_templates(composer)
    problems += tproblems
    if not tproblems:
        click.echo(f"templates: {', '.join(composer.names())} render with sample data")
    for p in problems:
        click.echo(p, err=True)
    findings = preflight.run_all(settings, connect=connect)
    for f in findings:
        click.echo(f.line(), err=not f.ok)
    code = max([EXIT_CONFIG if problems else 0, *(f.code for f in findings)])
    if code:
        sys.exit(EXIT_CONFIG if code >= EXIT_CONFIG else EXIT_RUNTIME)
    click.echo("configuration OK" + ("" if connect else
                                     " (`mailflow check --connect` tries the servers too)"))
