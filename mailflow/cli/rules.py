"""``mailflow rules``: try rule files on mail before they go live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import undefer

from mailflow.classify import load_rules
from mailflow.cli.base import EXIT_CONFIG, _open_db, _settings, fail, handles_errors
from mailflow.cli.tables import emit_json
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
@click.option("--effects", "show_effects", is_flag=True,
              help="Also show what each mail would do against the current database "
                   "(nothing is written).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handles_errors
def rules_test(ctx: click.Context, files: tuple[str, ...], rules_dir: str | None,
               show_effects: bool, as_json: bool) -> None:
    """Classify .eml FILES without side effects and print each rule's verdict.

    With --effects, also the effects each mail would have if it arrived now, each on its
    own, decided as ingest decides against the configured database (or an empty store
    when that cannot be read, saying so) in a transaction that is rolled back."""
    from mailflow.classify import Facts
    from mailflow.clock import SystemClock
    from mailflow.parse import Unparseable, parse

    settings, rs = _load_candidate(ctx, rules_dir)
    raws = [Path(name).read_bytes() for name in files]
    items: list[dict[str, Any]] = []
    for name, raw in zip(files, raws, strict=True):
        try:
            msg = parse(raw)
        except Unparseable as exc:
            items.append({"file": name, "error": str(exc)})
            continue
        when = (msg.date or SystemClock().now()).astimezone(settings.tz)
        out = rs.evaluate(Facts.of(msg, when))
        items.append({
            "file": name, "from": msg.from_addr, "subject": msg.subject,
            "severity": out.severity, "category": out.category,
            "owner_group": out.owner_group, "tags": list(out.tags),
            "rules": [{"rule": h.rule, "matched": h.matched, "why": h.why}
                      for h in out.trace]})
    against = None
    if show_effects:
        against = _add_effects(settings, rs, raws, items)
    if as_json:
        extra = {"against": against} if against is not None else {}
        emit_json(items, rules_version=rs.version, **extra)
        return
    click.echo(f"rule set {rs.version}: {len(rs.rules)} rules")
    if against is not None:
        click.echo(f"effects against {against}")
    for i in items:
        if "error" in i:
            click.echo(f"\n{i['file']}: not classified: {i['error']}")
        else:
            click.echo(f"\n{i['file']}: {i['from']} - {i['subject']}")
            for hit in i["rules"]:
                click.echo(f"  {'MATCH' if hit['matched'] else '  -  '} {hit['rule']:<24} "
                           f"{hit['why']}")
            click.echo(f"  => severity {i['severity']}, {i['category']}, owner "
                       f"{i['owner_group']}, tags {', '.join(i['tags']) or '-'}")
        if "effects" in i:
            click.echo(f"  effects ({i['outcome']}):")
            for e in i["effects"]:
                click.echo(f"    {e['description']}")


def _add_effects(settings: Any, rs: Any, raws: list[bytes],
                 items: list[dict[str, Any]]) -> str:
    """Each item gets ``outcome`` and ``effects``; returns what they were decided
    against. Nothing is written: see :mod:`mailflow.dryrun`."""
    from mailflow.clock import SystemClock
    from mailflow.dryrun import decide_files, store_for
    from mailflow.tickets.effects import describe

    with store_for(settings) as store:
        decisions = decide_files(store, settings, rs, raws, SystemClock().now())
    against = store.described
    if store.why_empty is not None:
        against += f" ({store.why_empty})"
    for item, d in zip(items, decisions, strict=True):
        item["outcome"] = d.outcome
        item["effects"] = [{"type": type(e).__name__, "description": describe(e)}
                           for e in d.effects]
    return against


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
