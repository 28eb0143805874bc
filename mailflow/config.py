"""Typed settings from ``mailflow.yaml``.

The administrator edits this file at odd hours, so validation reports every problem at
once, each with its line and key path (``mailflow.yaml:3: imap.port: must be an integer (got
"abc")``), and never echoes a secret back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mailflow.configerrors import ConfigError, KeyLines, describe, key_lines
from mailflow.logins import CredentialError as CredentialError
from mailflow.logins import LoginSettings as _Login

DEFAULT_CONFIG_PATH = Path("mailflow.yaml")
CONFIG_ENV = "MAILFLOW_CONFIG"

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> timedelta:
    """``90s``, ``15m``, ``4h``, ``2d``, ``1w``; a bare integer counts seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"must be a duration such as 90s, 15m, 4h or 2d (got {value!r})")
    if isinstance(value, int):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f'must be a duration such as 90s, 15m, 4h or 2d (got "{value}")')


def format_duration(td: timedelta) -> str:
    """The inverse of :func:`parse_duration`, for messages and templates."""
    seconds = int(td.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Security = Literal["ssl", "starttls", "none"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MailboxSettings(_Strict):
    """One IMAP folder that mailflow ingests, with its own checkpoint."""

    folder: str = "INBOX"
    processed_folder: str | None = None
    # "sent": the shared mailbox's Sent folder, where staff who answer customers from
    # their own mail client leave a copy. Each answer that belongs to a ticket is
    # recorded on it as a response (nothing is sent); nothing there opens a ticket.
    role: Literal["inbox", "sent"] = "inbox"


class ImapSettings(_Login):
    host: str = "127.0.0.1"
    port: int = 993
    security: Security = "ssl"
    folder: str = "INBOX"
    processed_folder: str | None = None
    # Further folders on the same account (a tier-replies folder, say).
    extra_folders: list[MailboxSettings] = Field(default_factory=list)
    idle: bool = True
    poll_interval: Duration = timedelta(seconds=60)
    batch_size: int = Field(default=500, ge=1, le=5000)
    timeout: Duration = timedelta(seconds=30)
    # What the first look at a folder does with the mail already in it: "import" makes
    # tickets of it without mailing any customer, "skip" leaves it untouched and starts
    # after the newest message, "acknowledge" treats it as new mail.
    backlog: Literal["import", "skip", "acknowledge"] = "import"

    def mailboxes(self) -> list[MailboxSettings]:
        first = MailboxSettings(folder=self.folder, processed_folder=self.processed_folder)
        return [first, *self.extra_folders]


class SmtpSettings(_Login):
    host: str = "127.0.0.1"
    port: int = 587
    security: Security = "starttls"
    timeout: Duration = timedelta(seconds=30)
    connections: int = Field(default=2, ge=1, le=32)  # parallel SMTP connections


class OutboxSettings(_Strict):
    max_attempts: int = Field(default=20, ge=1)
    retry_initial: Duration = timedelta(seconds=30)
    retry_max: Duration = timedelta(hours=1)
    # A claimed row whose sender died is retried after this long.
    lease: Duration = timedelta(minutes=5)


class IngestSettings(_Strict):
    # Worker processes that parse and classify the next batch while the current one is
    # written: "auto" is 1 on a machine with two or more cores, else 0 (all in the
    # watcher thread). More than one helps only with several folders.
    parse_processes: int | Literal["auto"] = "auto"

    @field_validator("parse_processes")
    @classmethod
    def _not_negative(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 0 <= v <= 64:
            raise ValueError(f'must be "auto" or a number from 0 to 64 (got {v})')
        return v


class AckSettings(_Strict):
    # At most this many acknowledgments per sender per hour: two autoresponders
    # answering each other cannot ping-pong through us.
    max_per_sender_per_hour: int = Field(default=3, ge=0)


class SeverityLevel(_Strict):
    label: str
    # What the acknowledgment promises; the SLA clocks measure against it.
    first_response: Duration


def _default_severities() -> dict[int, SeverityLevel]:
    return {
        1: SeverityLevel(label="critical", first_response=timedelta(hours=1)),
        2: SeverityLevel(label="high", first_response=timedelta(hours=4)),
        3: SeverityLevel(label="normal", first_response=timedelta(days=1)),
    }


class DigestSettings(_Strict):
    """The daily digest for management (docs/digest.md): when, to whom, its thresholds."""

    # Local time (in ``timezone``) the digest of the previous day is sent; a daemon that
    # was down then sends it when it is back, once.
    at: str = Field(default="07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    recipients: list[str] = Field(default_factory=list)
    # First-contact resolution: not reopened within this long after resolution.
    fcr_window: Duration = timedelta(days=7)
    # The escalation ratio is flagged above this share of tickets.
    escalation_ratio_flag: float = Field(default=0.02, ge=0, le=1)
    # An escalation this soon after the ticket opened counts as early.
    early_escalation: Duration = timedelta(hours=4)


class AlertSettings(_Strict):
    """Who hears of intake or delivery that stopped, and after how long (docs/operations.md)."""

    # The administrator's address; none: problems show only in /healthz and the log.
    admin: str | None = None
    # A mailbox or the sender failing this long is reported (then daily, and on recovery).
    after: Duration = timedelta(minutes=5)


class RetentionSettings(_Strict):
    """How long raw mail of closed tickets is kept (docs/deploy.md): rows, texts, events
    and the digest's figures stay; only the raw bytes go."""

    # Days after closing; none: raw mail is kept for ever.
    raw_days: int | None = Field(default=None, ge=0)


class MetricsSettings(_Strict):
    """The optional HTTP listener for /healthz and /metrics (off unless ``listen`` is set)."""

    # host:port, e.g. 127.0.0.1:9308; loopback unless a proxy guards it (no auth).
    listen: str | None = Field(default=None, pattern=r"^\[?[0-9A-Za-z.:-]*\]?:\d{1,5}$")


class DeskDefaults(_Strict):
    """What a further mailbox's new tickets are when no rule decides (rules win)."""

    severity: Literal[1, 2, 3] | None = None
    category: Literal["technical", "administrative"] | None = None
    owner: str | None = None  # a tier group of groups.yaml


class MailboxAccount(_Strict):
    """A further support address on its own IMAP account (``mailboxes:``): billing@, a
    vendor-facing box. Each has its own watcher and checkpoint; its tickets are answered
    from its address, numbered in the one sequence, under its prefix or the shared one."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    support_address: str
    ticket_prefix: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9]{0,9}$")
    imap: ImapSettings
    defaults: DeskDefaults = Field(default_factory=DeskDefaults)

    @field_validator("support_address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _email(v)


def _email(v: str) -> str:
    if "@" not in v or v.startswith("@") or v.endswith("@") or any(c in v for c in " \r\n"):
        raise ValueError(f'must be an email address (got "{v}")')
    return v.lower()


class Settings(_Strict):
    database: str = "sqlite:///mailflow.db"
    timezone: str = "UTC"
    support_address: str = "support@example.test"
    # Display name on the mail we send.
    from_name: str = "Support"
    # Other addresses that are ours: mail from them never opens a ticket or gets an ack.
    own_addresses: list[str] = Field(default_factory=list)
    ticket_prefix: str = Field(default="SUP", pattern=r"^[A-Z][A-Z0-9]{0,9}$")
    imap: ImapSettings = Field(default_factory=ImapSettings)
    # Further support mailboxes, each on its own IMAP account (docs/mailboxes.md).
    mailboxes: list[MailboxAccount] = Field(default_factory=list)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    acknowledgment: AckSettings = Field(default_factory=AckSettings)
    severities: dict[int, SeverityLevel] = Field(default_factory=_default_severities)
    digest: DigestSettings = Field(default_factory=DigestSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    rules_dir: Path = Path("rules")
    templates_dir: Path = Path("templates")
    # A reply to a ticket closed longer ago than this opens a new, linked ticket.
    reopen_window: Duration = timedelta(days=30)
    # Attachments above this size are not kept as attachments; the ticket says so.
    max_attachment_size: int = Field(default=10 * 1024 * 1024, ge=0)
    # Where the config file lives; relative paths above are resolved against it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'unknown time zone (got "{v}")') from None
        return v

    @field_validator("support_address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _email(v)

    @model_validator(mode="after")
    def _distinct_mailboxes(self) -> Settings:
        """Two entries for one address or one folder would answer and fetch twice."""
        names: set[str] = {"main"}
        addresses = {self.support_address}
        folders = {(self.imap.host, self.imap.port, self.imap.username, f.folder)
                   for f in self.imap.mailboxes()}
        for m in self.mailboxes:
            if m.name in names:
                raise ValueError(f'mailboxes: the name "{m.name}" is used twice'
                                 + (' ("main" is the top-level mailbox)' if m.name == "main"
                                    else ""))
            if m.support_address in addresses:
                raise ValueError(f"mailboxes: {m.support_address} is the support address "
                                 "of two mailboxes")
            for f in m.imap.mailboxes():
                where = (m.imap.host, m.imap.port, m.imap.username, f.folder)
                if where in folders:
                    raise ValueError(f"mailboxes: {m.name}: folder {f.folder} of "
                                     f"{m.imap.username}@{m.imap.host} is watched twice")
                folders.add(where)
            names.add(m.name)
            addresses.add(m.support_address)
        return self

    @field_validator("severities")
    @classmethod
    def _three_levels(cls, v: dict[int, SeverityLevel]) -> dict[int, SeverityLevel]:
        if set(v) != {1, 2, 3}:
            raise ValueError("must define exactly the severities 1, 2 and 3")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def domain(self) -> str:
        return self.support_address.rpartition("@")[2]

    def path(self, p: Path) -> Path:
        return p if p.is_absolute() else self.base_dir / p

    @property
    def rules_path(self) -> Path:
        return self.path(self.rules_dir)

    @property
    def templates_path(self) -> Path:
        return self.path(self.templates_dir)

    @property
    def database_url(self) -> str:
        """SQLite paths are relative to the config file, not the caller's cwd."""
        prefix = "sqlite:///"
        if self.database.startswith(prefix) and not self.database.startswith(prefix + "/"):
            rest = self.database[len(prefix) :]
            if rest and rest != ":memory:" and not rest.startswith("file:"):
                return prefix + str((self.base_dir / rest).resolve())
        return self.database

    def all_own_addresses(self) -> frozenset[str]:
        return frozenset({self.support_address, *(m.support_address for m in self.mailboxes),
                          *(a.lower() for a in self.own_addresses)})


def validate(data: Any, source: str = "mailflow.yaml", base_dir: Path | None = None,
             lines: KeyLines | None = None) -> Settings:
    """Validate already-loaded YAML; raise :class:`ConfigError` listing every problem,
    each at its line when ``lines`` (from :func:`configerrors.key_lines`) knows it."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the file must be a mapping of keys"])
    problems = [f"{source}:{line}: {'.'.join(path)}: duplicate key (first at line {first}; "
                "YAML would silently keep the last one)"
                for path, line, first in (lines.duplicates if lines else [])]
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems += [f"{_at(source, lines, e['loc'])}: {describe(e, Settings)}"
                     for e in exc.errors(include_url=False)]
    if problems:
        raise ConfigError(problems)
    base = base_dir or Path(".")
    return settings.model_copy(update={
        "base_dir": base, "imap": settings.imap.under(base), "smtp": settings.smtp.under(base),
        "mailboxes": [m.model_copy(update={"imap": m.imap.under(base)})
                      for m in settings.mailboxes]})


def _at(source: str, lines: KeyLines | None, loc: Sequence[Any]) -> str:
    """``mailflow.yaml:14`` where the offending key is known, else ``mailflow.yaml``."""
    line = lines.line_of(loc) if lines else None
    return f"{source}:{line}" if line else source


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load(path: Path) -> Settings:
    """Read and validate a config file; every failure is a :class:`ConfigError`."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{name}: no such file (create one with `mailflow init`, or pass --config)"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError([f"{name}{where}: {problem}"]) from None
    return validate(data, source=path.name, base_dir=path.parent.resolve(),
                    lines=key_lines(text))
