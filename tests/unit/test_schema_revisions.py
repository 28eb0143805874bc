"""The schema check reads the migration files itself (no alembic import in the daemon):
it must agree with alembic about every revision and the head."""

from __future__ import annotations

import subprocess
import sys

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from mailflow.store.db import _revisions, alembic_config, head_revision


def test_revisions_and_head_agree_with_alembic() -> None:
    script = ScriptDirectory.from_config(alembic_config(create_engine("sqlite://")))
    assert head_revision() == script.get_current_head()
    assert _revisions()[0] == {r.revision for r in script.walk_revisions()}


def test_the_daemon_does_not_import_alembic() -> None:
    code = ("import sys, mailflow.daemon, mailflow.app; "
            "print(sorted(m for m in ('alembic', 'mako', 'pygments') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
