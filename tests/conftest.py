"""Shared fixtures: a real mail stack, real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mailflow import config as config_mod
from mailflow.app import App, build
from mailflow.clock import FrozenClock
from mailflow.config import Settings
from mailflow.mailstack import PASSWORD, MailStack
from mailflow.store.db import make_engine, upgrade

PG_ADMIN_URL = os.environ.get("MAILFLOW_TEST_PG",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SUPPORT = "support@example.test"
CUSTOMER = "customer@example.test"
TIER2 = "tier2@example.test"
BILLING = "billing@example.test"
USERS = [SUPPORT, CUSTOMER, TIER2, "other@example.test", "robot@example.test", BILLING]


def _pg_reachable() -> bool:
    try:
        eng = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


PG_OK = _pg_reachable()


@pytest.fixture(scope="session")
def mailstack() -> Iterator[MailStack]:
    # Not under pytest's tmp dir: its mode 700 parents would lock Dovecot's auth
    # process (user dovecot) out of the users file.
    stack = MailStack.create(users=list(USERS))
    stack.start()
    os.environ["MAILFLOW_IMAP_PASSWORD"] = PASSWORD
    yield stack
    stack.stop()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture
def stack(mailstack: MailStack) -> Iterator[MailStack]:
    """The session's stack with every user's mail removed and SMTP healthy."""
    if mailstack._controller is None:
        mailstack.start_smtp()
    assert mailstack.relay is not None
    mailstack.relay.fail_with = None
    mailstack.relay.reject.clear()
    for user in mailstack.users:
        with mailstack.imap(user) as c:
            for folder in [f[2] for f in c.list_folders()]:
                if folder != "INBOX":
                    c.delete_folder(folder)
            c.select_folder("INBOX")
            uids = c.search("ALL")
            if uids:
                c.delete_messages(uids)
                c.expunge()
    yield mailstack


def _new_pg_database() -> tuple[str, str]:
    name = f"mf_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name


def _drop_pg_database(name: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind (no schema yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailflow.db'}"
        return
    if not PG_OK:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    url, name = _new_pg_database()
    yield url
    _drop_pg_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mailflow.db'}"


def make_settings(stack: MailStack | None, db: str, tmp_path: Path, **over: Any) -> Settings:
    data: dict[str, Any] = {"database": db, "support_address": SUPPORT}
    if stack is not None:
        data["imap"] = {"host": "127.0.0.1", "port": stack.imap_port, "security": "none",
                        "username": SUPPORT, "password_env": "MAILFLOW_IMAP_PASSWORD",
                        "idle": True, "poll_interval": "1s",
                        # Tests put mail in the INBOX before the first cycle: new mail.
                        "backlog": "acknowledge"}
        data["smtp"] = {"host": "127.0.0.1", "port": stack.smtp_port, "security": "none"}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    data.setdefault("rules_dir", str(Path(__file__).parent.parent / "rules"))
    return config_mod.validate(data, base_dir=tmp_path)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """Build an App on a migrated database; closes everything at the end."""
    apps: list[App] = []

    def factory(stack: MailStack | None, db: str, clock: FrozenClock | None = None,
                **over: Any) -> App:
        settings = make_settings(stack, db, tmp_path, **over)
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        app = build(settings, clock)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.close()
