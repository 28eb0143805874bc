"""What a candidate rule set would change on stored tickets, compared like with like.

A ticket's severity, category and owner are not what its first message alone says:
ingest classifies the first message, and every later customer message re-classifies it,
where severity may only rise (``mailflow.tickets.decide._Batch._join``). A replay that
looked at the first message only would report every ticket raised by a follow-up as
"would change", even with unchanged rules. So the same fold runs here twice, once with
the rules in force and once with the candidate, over the same messages, and the two
results are compared: a difference is the candidate's doing, not the history's (staff
changing a severity by command, a referral moving the owner).

Pure: stored messages (raw bytes and the time they arrived) and rule sets in,
:class:`TicketReplay` out. Reading the store is :mod:`mailflow.replay_source`'s job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from mailflow.classify.conditions import Facts
from mailflow.classify.ruleset import Classification, RuleSet
from mailflow.parse import Incoming, Unparseable, parse

# The fields a replay compares, in the order they are shown.
FIELDS = ("severity", "category", "owner_group")


@dataclass(frozen=True)
class StoredMail:
    """One customer message of a ticket as ingest classified it: the first one opened
    the ticket, each later one joined it as the customer's (not staff's) words."""

    raw: bytes
    received: datetime  # aware; business-hours conditions read it in the desk's zone


@dataclass(frozen=True)
class Verdict:
    """What a rule set makes of a ticket's messages: the fold of their classifications."""

    severity: int
    category: str
    owner_group: str
    tags: tuple[str, ...]
    matched: frozenset[str]  # rules that matched any of the messages

    def get(self, name: str) -> int | str:
        value: int | str = getattr(self, name)
        return value


@dataclass(frozen=True)
class Change:
    field: str
    current: int | str
    candidate: int | str


@dataclass(frozen=True)
class TicketReplay:
    ticket_id: int
    messages: int  # customer messages classified (unparseable ones are skipped)
    current: Verdict
    candidate: Verdict

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(Change(f, self.current.get(f), self.candidate.get(f)) for f in FIELDS
                     if self.current.get(f) != self.candidate.get(f))


def fold(classifications: Iterable[Classification]) -> Verdict | None:
    """Ingest's fold: the first classification opens the ticket (severity, category,
    owner, tags); each later one may only raise the severity (1 is the highest).
    None for no classification at all."""
    it = iter(classifications)
    first = next(it, None)
    if first is None:
        return None
    severity = first.severity
    matched = set(first.matched)
    for c in it:
        severity = min(severity, c.severity)
        matched.update(c.matched)
    return Verdict(severity, first.category, first.owner_group, first.tags,
                   frozenset(matched))


def parse_mails(mails: Sequence[StoredMail]) -> list[tuple[Incoming, datetime]]:
    """The parseable messages with their arrival times, in order. A stored message that
    no longer parses is skipped, for both rule sets alike."""
    out = []
    for m in mails:
        try:
            out.append((parse(m.raw), m.received))
        except Unparseable:
            continue
    return out


def verdict(rules: RuleSet, messages: Sequence[tuple[Incoming, datetime]], tz: tzinfo
            ) -> Verdict | None:
    """``rules`` folded over one ticket's parsed customer messages, as ingest would."""
    return fold(rules.evaluate(Facts.of(msg, received.astimezone(tz)), trace=False)
                for msg, received in messages)


def replay_ticket(ticket_id: int, mails: Sequence[StoredMail], current: RuleSet,
                  candidate: RuleSet, tz: tzinfo) -> TicketReplay | None:
    """Both rule sets on one ticket's customer messages (in arrival order). None when
    none of them parses: there is nothing to compare."""
    messages = parse_mails(mails)
    now = verdict(current, messages, tz)
    if now is None:
        return None
    # The same rule files (same version hash) give the same verdict: evaluate once.
    then = now if candidate.version == current.version else verdict(candidate, messages, tz)
    assert then is not None
    return TicketReplay(ticket_id, len(messages), now, then)


def hits_per_rule(replays: Iterable[TicketReplay], rules: RuleSet) -> dict[str, int]:
    """Tickets on which each of ``rules`` (the candidate) matched at least one message,
    in rule order; a rule at 0 never matches in the period."""
    counts: Counter[str] = Counter()
    for r in replays:
        counts.update(r.candidate.matched)
    return {rule.name: counts[rule.name] for rule in rules.rules}
