"""``mailflow rules``: try rule files on mail before they go live."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mailflow.classify import RuleSet, load_rules
from mailflow.cli.base import EXIT_CONFIG, _open_db, _settings, fail, handles_errors
from mailflow.cli.tables import emit_json

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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handles_errors
def rules_replay(ctx: click.Context, since: str, rules_dir: str | None, as_json: bool) -> None:
    """Re-classify stored tickets with a candidate rule set and show what would change.

    Each ticket's customer messages are classified as ingest did (the first one
    classifies, later ones may only raise the severity), once with the rules in force
    and once with the candidate, and the two are compared."""
    from mailflow.accounts import ticket_ref, with_defaults
    from mailflow.classify.replay import hits_per_rule, replay_ticket
    from mailflow.clock import SystemClock
    from mailflow.config import parse_duration
    from mailflow.replay_source import count_since, tickets_since

    try:
        window = parse_duration(since)
    except ValueError as exc:
        fail(f"--since: {exc}", EXIT_CONFIG)
    settings, candidate = _load_candidate(ctx, rules_dir)
    current = (candidate if not rules_dir else
               load_rules(settings.rules_path, display=str(settings.rules_dir)))
    _, sessions = _open_db(ctx)
    cutoff = SystemClock().now() - window
    progress = _Progress()
    replays, items = [], []
    # Each desk classifies with its own defaults where no rule decides (as its watcher
    # does), and names its tickets with its own prefix.
    defaults = {m.name: m.defaults for m in settings.mailboxes}
    desk_rules: dict[str | None, tuple[RuleSet, RuleSet]] = {None: (current, candidate)}
    with sessions() as s:
        progress.total = count_since(s, cutoff)
        for t in tickets_since(s, cutoff):
            progress.step()
            if t.desk not in desk_rules:
                own = defaults.get(t.desk)
                desk_rules[t.desk] = (with_defaults(current, own), with_defaults(candidate, own))
            now_rules, new_rules = desk_rules[t.desk]
            r = replay_ticket(t.id, t.mails, now_rules, new_rules, settings.tz)
            if r is None:
                continue
            replays.append(r)
            items.append(_replay_item(ticket_ref(settings, t.id, t.desk), t, r))
    progress.done()
    hits = hits_per_rule(replays, candidate)
    changed = [i for i in items if i["changes"]]
    if as_json:
        emit_json(items, since=cutoff.isoformat(), rules_version=candidate.version,
                  current_rules_version=current.version, changed=len(changed), hits=hits,
                  never_matches=[name for name, n in hits.items() if not n])
        return
    click.echo(f"replayed {len(items)} ticket(s) since {cutoff:%Y-%m-%d %H:%M} with rule set "
               f"{candidate.version} (in force: {current.version})")
    click.echo(f"\n{len(changed)} would change:" if changed else "\nno ticket would change")
    for i in changed:
        moves = "; ".join(f"{_SHOWN[c['field']]} {c['current']} -> {c['candidate']}"
                          for c in i["changes"])
        click.echo(f"  {i['ticket']:<10} {moves}  ({i['subject'][:50]})")
    click.echo("\nhits per rule:")
    for name, n in hits.items():
        click.echo(f"  {n:>6}  {name}" + ("   (never matches)" if not n else ""))


_SHOWN = {"severity": "severity", "category": "category", "owner_group": "owner"}


def _replay_item(ticket: str, t: Any, r: Any) -> dict[str, Any]:
    def verdict(v: Any) -> dict[str, Any]:
        return {"severity": v.severity, "category": v.category, "owner_group": v.owner_group,
                "tags": list(v.tags), "rules": sorted(v.matched)}

    return {"ticket": ticket, "id": t.id, "subject": t.subject, "messages": r.messages,
            "stored": {"severity": t.severity, "category": t.category,
                       "owner_group": t.owner_group},
            "current": verdict(r.current), "candidate": verdict(r.candidate),
            "changes": [{"field": c.field, "current": c.current, "candidate": c.candidate}
                        for c in r.changes]}


class _Progress:
    """A line on stderr every ``every`` tickets, only when stderr is a terminal: a long
    replay shows it is alive; a script's or a pipe's output stays clean."""

    def __init__(self, every: int = 500) -> None:
        self.total = 0
        self.seen = 0
        self.every = every
        self.shown = sys.stderr.isatty()

    def step(self) -> None:
        self.seen += 1
        if self.shown and self.seen % self.every == 0:
            click.echo(f"replayed {self.seen} of {self.total} tickets...", err=True)

    def done(self) -> None:
        if self.shown and self.seen >= self.every:
            click.echo(f"replayed {self.seen} of {self.total} tickets", err=True)
