"""``mailflow init``: a starter configuration that passes ``check``."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from mailflow.cli.base import EXIT_CONFIG, fail, handles_errors
from mailflow.compose import Composer, TemplateProblem
from mailflow.resources import default_rules_dir, default_templates_dir
from mailflow.template_samples import sample_context

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
  # The mail already in the folder when mailflow first looks at it: import (tickets,
  # no mail to customers: nobody gets an acknowledgment for a mail from 2019), skip
  # (leave it, start with the next new mail) or acknowledge (treat it as new mail).
  backlog: import
  # The shared mailbox's Sent folder: answers staff send from their own mail client
  # count as responses for the service levels.
  # extra_folders:
  #   - {folder: Sent, role: sent}

# Further support addresses, each on its own IMAP account, answered from its own
# address under its own prefix (docs/configuration.md, "mailboxes").
# mailboxes:
#   - name: billing
#     support_address: billing@example.test
#     ticket_prefix: BIL
#     imap: {host: 127.0.0.1, port: 993, username: billing@example.test,
#            password_env: MAILFLOW_BILLING_PASSWORD}
#     defaults: {category: administrative}

smtp:
  host: 127.0.0.1
  port: 587
  security: starttls
  username: support@example.test
  password_env: MAILFLOW_SMTP_PASSWORD

acknowledgment:
  max_per_sender_per_hour: 3

# The morning digest for management (docs/digest.md).
# digest:
#   at: "07:00"
#   recipients: [service-manager@example.test]

# Who hears when intake or delivery stops (docs/operations.md).
# alerts:
#   admin: postmaster@example.test

rules_dir: rules
templates_dir: templates
"""


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@handles_errors
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
    click.echo("next: edit mailflow.yaml, then `mailflow db upgrade` and "
               "`mailflow check --connect`")


def check_templates(composer: Composer) -> list[str]:
    problems = []
    for name in composer.names():
        try:
            composer.render(name, sample_context(name))
        except TemplateProblem as exc:
            problems.append(str(exc))
    return problems
