"""Operational failures reach the administrator as one line, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailflow.cli import main
from mailflow.mailstack import MailStack
from tests.conftest import PG_ADMIN_URL, PG_OK, SUPPORT

RULES = Path(__file__).parents[2] / "rules"


def _config(tmp_path: Path, database: str, extra: str = "") -> Path:
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(f"database: {database}\nrules_dir: {RULES}\n{extra}")
    return cfg


def _one_line(res: Result) -> str:
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    return lines[0]


def test_postgres_url_without_psycopg_says_which_extra(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    cfg = _config(tmp_path, "postgresql+psycopg://mf:hunter2@127.0.0.1/mailflow")
    for args in (["tickets", "list"], ["db", "upgrade"], ["run", "--once"]):
        res = CliRunner().invoke(main, ["--config", str(cfg), *args])
        assert res.exit_code == 1, (args, res.output)
        line = _one_line(res)
        assert "install mailflow[postgres]" in line and "hunter2" not in line


@pytest.mark.skipif(not PG_OK, reason="PostgreSQL not reachable")
def test_database_that_does_not_exist_or_refuses_the_login(tmp_path: Path) -> None:
    server = PG_ADMIN_URL.rsplit("/", 1)[0]
    cfg = _config(tmp_path, f"{server}/mailflow_no_such_db")
    for args in (["tickets", "list"], ["db", "upgrade"], ["run", "--once"]):
        res = CliRunner().invoke(main, ["--config", str(cfg), *args])
        assert res.exit_code == 1
        line = _one_line(res)
        assert line.startswith("mailflow: cannot use the database ") and \
            'database "mailflow_no_such_db" does not exist' in line, line
    bad_user = server.replace("://postgres@", "://nobody_here:pw@")
    cfg = _config(tmp_path, f"{bad_user}/test")
    res = CliRunner().invoke(main, ["--config", str(cfg), "db", "upgrade"])
    line = _one_line(res)
    assert 'role "nobody_here" does not exist' in line or "authentication failed" in line
    assert ":pw@" not in line


def test_sqlite_in_a_missing_folder(tmp_path: Path) -> None:
    cfg = _config(tmp_path, f"sqlite:///{tmp_path}/missing/m.db")
    res = CliRunner().invoke(main, ["--config", str(cfg), "db", "upgrade"])
    assert res.exit_code == 1
    assert "unable to open database file (does its folder exist" in _one_line(res)


def test_unreadable_rule_file(tmp_path: Path) -> None:
    # Root reads anything, so "unreadable" is a rule file whose target is gone.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.yaml").symlink_to(tmp_path / "gone.yaml")
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/m.db\n")
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(cfg), "db", "upgrade"]).exit_code == 0
    res = runner.invoke(main, ["--config", str(cfg), "run", "--once"])
    assert res.exit_code in (1, 2)
    assert f"mailflow: {rules / 'broken.yaml'}: No such file or directory" == _one_line(res)
    verbose = runner.invoke(main, ["-vv", "--config", str(cfg), "run", "--once"])
    assert "Traceback" in verbose.output
    checked = runner.invoke(main, ["--config", str(cfg), "check"])
    assert checked.exit_code == 2 and "Traceback" not in checked.output
    assert f"{rules / 'broken.yaml'}: No such file or directory" in checked.output


def test_refused_imap_login_is_decoded_and_names_the_user(stack: MailStack, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(stack.settings_yaml(f"sqlite:///{tmp_path}/m.db", f"rules_dir: {RULES}\n"))
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(cfg), "db", "upgrade"]).exit_code == 0
    monkeypatch.setenv("MAILFLOW_IMAP_PASSWORD", "wrong-password-123")
    res = runner.invoke(main, ["--config", str(cfg), "run", "--once"])
    assert res.exit_code == 1
    assert _one_line(res) == (f"mailflow: IMAP 127.0.0.1:{stack.imap_port}: login as {SUPPORT} "
                              "refused: [AUTHENTICATIONFAILED] Authentication failed.")
