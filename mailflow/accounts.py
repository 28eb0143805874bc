"""The support mailboxes: the main one (``imap:``, ``support_address``, ``ticket_prefix``)
and the further ones of ``mailboxes:``, each a desk with its own address and prefix.

A ticket belongs to the desk its first mail came in on (``tickets.desk``; None for the
main mailbox), and every mail about it goes out from that desk's address, under its
prefix, whoever queues it: ingest, the scheduler or the CLI. That is decided once, in
the writer, from the :class:`~mailflow.tickets.apply.ApplyContext` built here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from mailflow.classify.reloader import RulesHolder
from mailflow.classify.ruleset import RuleSet
from mailflow.config import DeskDefaults, ImapSettings, MailboxSettings, Settings
from mailflow.tickets import ref
from mailflow.tickets.apply import ApplyContext, DeskIdentity

MAIN = "main"  # how logs and `check` name the top-level mailbox


@dataclass(frozen=True)
class Account:
    desk: str | None  # None: the main mailbox
    imap: ImapSettings
    support_address: str
    prefix: str
    defaults: DeskDefaults | None = None

    @property
    def label(self) -> str:
        return self.desk or MAIN

    def checkpoint_key(self, mailbox: MailboxSettings) -> str:
        """The main mailbox keeps the key it always had; further ones are named, so two
        accounts with the same user name on different servers never share a checkpoint."""
        base = f"{self.imap.username or ''}/{mailbox.folder}"
        return base if self.desk is None else f"{self.desk}:{base}"


def accounts(settings: Settings) -> list[Account]:
    main = Account(None, settings.imap, settings.support_address, settings.ticket_prefix)
    return [main, *(Account(m.name, m.imap, m.support_address,
                            m.ticket_prefix or settings.ticket_prefix, m.defaults)
                    for m in settings.mailboxes)]


def account_for_key(settings: Settings, key: str) -> Account:
    """The account a checkpoint key (a quarantined message's ``mailbox``) belongs to;
    the main one for keys no longer configured."""
    found = accounts(settings)
    for a in found:
        if any(a.checkpoint_key(mb) == key for mb in a.imap.mailboxes()):
            return a
    return found[0]


def identities(settings: Settings) -> dict[str, DeskIdentity]:
    return {m.name: DeskIdentity(m.support_address, m.ticket_prefix or settings.ticket_prefix)
            for m in settings.mailboxes}


def apply_context(settings: Settings, now: datetime, desk: str | None = None) -> ApplyContext:
    """The writer's context for anything this installation does: one place, so that no
    caller can forget the further desks."""
    return ApplyContext(now, settings.support_address, settings.domain,
                        settings.ticket_prefix, getattr(settings.tz, "key", None) or "UTC",
                        desks=identities(settings), desk=desk)


def prefix_of(settings: Settings, desk: str | None) -> str:
    ident = identities(settings).get(desk) if desk is not None else None
    return ident.prefix if ident else settings.ticket_prefix


def ticket_ref(settings: Settings, ticket_id: int, desk: str | None) -> str:
    return ref(prefix_of(settings, desk), ticket_id)


def desk_prefixes(settings: Settings) -> dict[str | None, str]:
    """Each desk's prefix by desk name; None: the main mailbox."""
    return {None: settings.ticket_prefix,
            **{name: i.prefix for name, i in identities(settings).items()}}


def prefixes(settings: Settings) -> list[str]:
    return list(dict.fromkeys([settings.ticket_prefix,
                               *(m.ticket_prefix for m in settings.mailboxes
                                 if m.ticket_prefix)]))


def parse_ticket(settings: Settings, text: str) -> int | None:
    """``SUP-12``, ``BIL-12`` or ``12`` -> 12: numbers are unique across desks, so any
    configured prefix names the ticket."""
    t = text.strip().upper()
    for p in prefixes(settings):
        if t.startswith(p + "-"):
            t = t[len(p) + 1:]
            break
    return int(t) if t.isdigit() else None


def expected_ref(settings: Settings) -> str:
    return " or ".join(f"{p}-N" for p in prefixes(settings))


def with_defaults(rules: RuleSet, defaults: DeskDefaults | None) -> RuleSet:
    """The desk's classification where no rule decides; the rules themselves win."""
    if defaults is None:
        return rules
    return dataclasses.replace(
        rules,
        default_severity=defaults.severity or rules.default_severity,
        default_category=defaults.category or rules.default_category,
        default_owner=defaults.owner or rules.default_owner)


class DeskRules:
    """The shared rules as one desk's watcher sees them: the same files, reloaded
    together, with the desk's own defaults."""

    def __init__(self, holder: RulesHolder, defaults: DeskDefaults | None):
        self.holder = holder
        self.defaults = defaults
        self._made: tuple[RuleSet, RuleSet] | None = None

    def refresh(self, force: bool = False) -> bool:
        return self.holder.refresh(force)

    @property
    def current(self) -> RuleSet:
        base = self.holder.current
        if self._made is None or self._made[0] is not base:
            self._made = (base, with_defaults(base, self.defaults))
        return self._made[1]


def unknown_owners(settings: Settings, groups: Iterable[str]) -> list[str]:
    """``mailboxes[i].defaults.owner`` naming no tier group: reported by ``check``."""
    known = set(groups)
    return [f"mailboxes: {m.name}: defaults.owner: unknown tier group {m.defaults.owner!r}"
            for m in settings.mailboxes
            if m.defaults.owner is not None and m.defaults.owner not in known]
