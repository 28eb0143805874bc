from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailflow.cli import main
from mailflow.config import ConfigError, load, parse_duration, validate


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("4h", 14400),
                                               ("2d", 172800), (30, 30)])
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["4 hours", "h", "-1m", True, 1.5])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_every_error_reported_at_once_with_key_path_and_no_secret() -> None:
    with pytest.raises(ConfigError) as e:
        validate({"imap": {"port": "abc", "security": "tls", "password": 12345,
                           "poll_interval": "soon"},
                  "smtp": {"hots": "x"}, "timezone": "Mars/Base", "ticket_prefix": "s-1"})
    text = "\n".join(e.value.problems)
    assert 'mailflow.yaml: imap.port: must be an integer (got "abc")' in text
    assert "imap.security: must be one of 'ssl', 'starttls' or 'none'" in text
    assert "imap.poll_interval" in text and "smtp.hots: unknown key" in text
    assert "timezone: unknown time zone" in text and "ticket_prefix" in text
    assert "12345" not in text
    assert "imap.password: must be text (got (hidden))" in text
    assert len(e.value.problems) == 7


def test_password_from_environment_is_not_in_repr(monkeypatch) -> None:
    monkeypatch.setenv("IMAP_PW", "hunter2")
    s = validate({"imap": {"password_env": "IMAP_PW"}, "smtp": {"password": "p4ss"}})
    assert s.imap.secret() == "hunter2" and s.smtp.secret() == "p4ss"
    assert "hunter2" not in repr(s) and "p4ss" not in repr(s)


def test_relative_sqlite_path_is_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "mailflow.yaml").write_text("database: sqlite:///data/m.db\n")
    s = load(tmp_path / "mailflow.yaml")
    assert s.database_url == f"sqlite:///{tmp_path}/data/m.db"
    assert s.rules_path == tmp_path / "rules"


def test_check_broken_config_exits_2_listing_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text("imap:\n  port: abc\n  password: sekrit-value\nsmtp:\n  security: tls\n"
                   "bogus: 1\n")
    res = CliRunner().invoke(main, ["--config", str(cfg), "check"])
    assert res.exit_code == 2
    assert 'mailflow.yaml:2: imap.port: must be an integer (got "abc")' in res.output
    assert "smtp.security" in res.output and "bogus: unknown key" in res.output
    assert "sekrit" not in res.output


def test_check_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text("imap:\n  port: 1\n bad indent: [\n")
    res = CliRunner().invoke(main, ["--config", str(cfg), "check"])
    assert res.exit_code == 2 and "mailflow.yaml:" in res.output


def test_missing_config_is_a_clear_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.yaml"), "check"])
    assert res.exit_code == 2 and "mailflow init" in res.output


def test_init_writes_files_that_pass_check(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "site")]).exit_code == 0
    cfg = str(tmp_path / "site" / "mailflow.yaml")
    assert runner.invoke(main, ["--config", cfg, "db", "upgrade"]).exit_code == 0
    env = {"MAILFLOW_IMAP_PASSWORD": "x", "MAILFLOW_SMTP_PASSWORD": "y"}
    res = runner.invoke(main, ["--config", cfg, "check"], env=env)
    assert res.exit_code == 0, res.output
    assert "configuration OK" in res.output
    again = runner.invoke(main, ["init", str(tmp_path / "site")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for args in (["--help"], ["init", "--help"], ["check", "--help"], ["run", "--help"],
                 ["tickets", "list", "--help"], ["tickets", "show", "--help"],
                 ["db", "upgrade", "--help"], ["outbox", "list", "--help"],
                 ["quarantine", "list", "--help"]):
        res = runner.invoke(main, args)
        assert res.exit_code == 0 and "Usage:" in res.output, args
    assert runner.invoke(main, ["frobnicate"]).exit_code == 2


def test_check_reports_broken_rules_and_templates_with_file_and_line(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path)]).exit_code == 0
    (tmp_path / "rules" / "classify.yaml").write_text(
        "rules:\n  - name: a\n    when: {subject: {regex: '(x'}}\n    set: {owner: tier9}\n")
    (tmp_path / "templates" / "acknowledgment.txt.j2").write_text(
        "{% block subject %}x{% endblock %}{% block body %}\n{{ ticket.nope }}\n"
        "{% endblock %}\n")
    res = runner.invoke(main, ["--config", str(tmp_path / "mailflow.yaml"), "check"])
    assert res.exit_code == 2
    assert "rules/classify.yaml:3: subject: invalid regular expression" in res.output
    assert "rules/classify.yaml:4: rule a: unknown tier group 'tier9'" in res.output
    assert "acknowledgment.txt.j2:2:" in res.output and "nope" in res.output


@pytest.mark.parametrize("value, ok", [("auto", True), (0, True), (2, True), (-1, False),
                                       ("many", False)])
def test_parse_processes(value: object, ok: bool) -> None:
    if ok:
        assert validate({"ingest": {"parse_processes": value}}).ingest.parse_processes == value
    else:
        with pytest.raises(ConfigError) as e:
            validate({"ingest": {"parse_processes": value}})
        assert any(p.startswith("mailflow.yaml: ingest.parse_processes") for p in e.value.problems)


@pytest.mark.parametrize("imap, problem", [
    ({"auth": "xoauth2", "username": "a@b.c"}, "exactly one of token_file or token_command"),
    ({"auth": "xoauth2", "username": "a@b.c", "token_file": "t", "token_command": "x"},
     "exactly one of token_file or token_command"),
    ({"auth": "xoauth2", "token_file": "t"}, "needs the username"),
    ({"auth": "xoauth2", "username": "a@b.c", "token_file": "t", "password_env": "P"},
     "uses a token, not password"),
    ({"token_file": "t"}, "used only with auth: xoauth2"),
    ({"auth": "kerberos"}, "imap.auth: must be one of 'password' or 'xoauth2'"),
])
def test_xoauth2_settings_are_checked(imap: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate({"imap": imap})
    assert problem in "\n".join(e.value.problems)


def test_token_file_is_read_fresh_and_stripped(tmp_path: Path) -> None:
    f = tmp_path / "token"
    st = validate({"smtp": {"auth": "xoauth2", "username": "a@b.c",
                            "token_file": str(f)}}).smtp
    f.write_text("tok-1\n")
    assert st.token() == "tok-1"
    f.write_text("tok-2\n")
    assert st.token() == "tok-2"
