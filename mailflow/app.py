"""The object graph, built in one place from settings and a clock."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailflow.accounts import DeskRules, accounts
from mailflow.classify.reloader import RulesHolder
from mailflow.clock import Clock, SystemClock
from mailflow.compose import Composer
from mailflow.config import Settings
from mailflow.imap import MailboxWatcher
from mailflow.ingest import Ingestor
from mailflow.outbox import OutboxSender
from mailflow.preparepool import PreparePool, resolve_processes
from mailflow.scheduler import Scheduler
from mailflow.store.db import make_engine, require_current, session_factory


@dataclass
class App:
    settings: Settings
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    rules: RulesHolder
    composer: Composer
    ingestor: Ingestor
    sender: OutboxSender
    pool: PreparePool
    scheduler: Scheduler

    def watchers(self) -> list[MailboxWatcher]:
        """One per folder of every mailbox account; a further mailbox's watchers open
        tickets on its desk, with its defaults over the shared rules."""
        out: list[MailboxWatcher] = []
        for account in accounts(self.settings):
            main = account.desk is None
            ingestor = self.ingestor if main else Ingestor(self.settings, self.sessions, account)
            rules = self.rules if main else DeskRules(self.rules, account.defaults)
            out += [MailboxWatcher(account.imap, mb, ingestor, rules, self.clock,
                                   pool=self.pool, key=account.checkpoint_key(mb))
                    for mb in account.imap.mailboxes()]
        return out

    def close(self) -> None:
        self.pool.close()
        self.sender.close()
        self.engine.dispose()


def build(settings: Settings, clock: Clock | None = None, check_schema: bool = True) -> App:
    """Raises SchemaError (run `db upgrade`) or RulesError (fix rules) before any work."""
    clock = clock or SystemClock()
    engine = make_engine(settings.database_url)
    try:
        if check_schema:
            require_current(engine)
        sessions = session_factory(engine)
        rules = RulesHolder(settings.rules_path)
    except BaseException:
        engine.dispose()
        raise
    composer = Composer(settings.templates_path)
    ingestor = Ingestor(settings, sessions)
    # Worker processes start on the first batch, not here: `check` and the CLI never pay.
    pool = PreparePool(resolve_processes(settings.ingest.parse_processes), settings.tz,
                       ingestor.own)
    # Outgoing mail is rendered in a worker process too, unless parse_processes is 0.
    sender = OutboxSender(settings, sessions, composer, clock,
                          render_processes=min(1, pool.processes))
    return App(settings, clock, engine, sessions, rules, composer, ingestor, sender, pool,
               Scheduler(settings, sessions))
