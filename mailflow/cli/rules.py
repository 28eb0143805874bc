"""``mailflow rules``: try rule files on mail before they go live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import undefer

from mailflow.classify import load_rules
from mailflow.cli.base import EXIT_CONFIG, _open_db, _settings, fail, handles_errors
from mailflow.store.models import StoredMessage, Ticket
from mailflow.tickets import ref

# -- rules ----------------------------------------------------------------------------------

@click.group()
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
