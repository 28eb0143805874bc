"""What a decision about incoming mail reads besides the mail: the settings as plain
data (:class:`IngestPolicy`), what the store knows (:class:`StoreFacts`) and where the
batch came from (:class:`Source`). Frozen, so a decision can be replayed from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

from mailflow.classify import Classification
from mailflow.classify.groups import GroupsConfig, frontline_only
from mailflow.linking import LinkFacts, LinkPolicy
from mailflow.sla_policy import SlaConfig
from mailflow.tickets import Writer
from mailflow.tickets.wording import business_words, human_duration


@dataclass(frozen=True)
class SeverityPromise:
    label: str
    first_response: str  # human: "4 hours"


@dataclass(frozen=True)
class IngestPolicy:
    """The settings a decision depends on, as plain data."""

    link: LinkPolicy
    support_address: str
    ack_limit: int  # acknowledgments per sender per hour
    severities: Mapping[int, SeverityPromise]
    max_attachment_size: int
    # Staff addresses and their role (front line, tier group members).
    staff: Mapping[str, Writer] = field(default_factory=dict)
    # The tier groups of the rule set in force (referrals, who may act) and the help
    # desk's time zone (mail commands' times, times shown in mail).
    groups: GroupsConfig = field(default_factory=frontline_only)
    tz: tzinfo = UTC
    # The service levels in force (sla.yaml): what the acknowledgment promises comes
    # from the same policy the clocks measure against. None: mailflow.yaml's severities.
    sla: SlaConfig | None = None

    def promise(self, cls: Classification, customer: str) -> str:
        """The first response the acknowledgment promises, in words."""
        fallback = self.severities[cls.severity].first_response
        if self.sla is None:
            return fallback
        try:
            p = self.sla.policy_for(cls.severity, cls.category, cls.owner_group or "frontline",
                                    customer)
        except LookupError:
            return fallback
        if p.first_response is None:
            return fallback
        if p.calendar.always_open:
            return human_duration(p.first_response.business)
        return business_words(p.first_response.text)


@dataclass(frozen=True)
class StoreFacts:
    """What the store knows that the decision needs, gathered per batch in few queries."""

    link: LinkFacts = field(default_factory=LinkFacts)
    known_keys: frozenset[str] = frozenset()
    # Acknowledgments queued per recipient in the last hour.
    ack_counts: Mapping[str, int] = field(default_factory=dict)
    suppressed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """Where the batch came from. UIDs up to ``backlog_until_uid`` were in the folder
    before mailflow first looked at it: they become tickets without customer mail."""

    mailbox: str | None = None
    uidvalidity: int | None = None
    backlog_until_uid: int = 0
    role: str = "inbox"  # "sent": the shared mailbox's Sent folder (staff answers)
