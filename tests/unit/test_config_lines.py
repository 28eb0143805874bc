"""Configuration errors carry the line of the key, suggest the key meant, and reject
duplicate keys; password_file is read at connect time."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailflow.config import ConfigError, CredentialError, Settings, load
from mailflow.configerrors import did_you_mean, key_lines


def _problems(tmp_path: Path, text: str) -> list[str]:
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(cfg)
    return e.value.problems


def test_misspelt_key_has_its_line_and_a_suggestion(tmp_path: Path) -> None:
    text = "database: sqlite:///x.db\n" * 1 + "\n" * 11 + "imap:\n  poll_intervall: 30s\n"
    assert _problems(tmp_path, text) == [
        "mailflow.yaml:14: imap.poll_intervall: unknown key (did you mean poll_interval?)"]


def test_every_problem_at_once_each_at_its_line(tmp_path: Path) -> None:
    text = ("imap:\n"               # 1
            "  host: a\n"           # 2
            "  port: abc\n"         # 3
            "  host: b\n"           # 4 duplicate
            "smtp:\n"               # 5
            "  securty: ssl\n"      # 6
            "  password_env: X\n"   # 7
            "  port: 25\n"          # 8
            "databse: sqlite://\n"  # 9
            "zzzz: 1\n")            # 10 nothing close
    probs = _problems(tmp_path, text)
    assert ("mailflow.yaml:4: imap.host: duplicate key (first at line 2; YAML would "
            "silently keep the last one)") in probs
    assert 'mailflow.yaml:3: imap.port: must be an integer (got "abc")' in probs
    assert "mailflow.yaml:6: smtp.securty: unknown key (did you mean security?)" in probs
    assert "mailflow.yaml:9: databse: unknown key (did you mean database?)" in probs
    assert "mailflow.yaml:10: zzzz: unknown key" in probs
    assert len(probs) == 5


def test_nested_keys_in_lists_and_dicts_are_located() -> None:
    text = ("imap:\n  extra_folders:\n    - folder: A\n    - foldr: B\n"
            "severities:\n  1: {lable: x, first_response: 1h}\n")
    lines = key_lines(text)
    assert lines.line_of(("imap", "extra_folders", 1, "foldr")) == 4
    assert lines.line_of(("severities", 1, "lable")) == 6
    assert lines.line_of(("imap", "missing_key")) == 1
    assert did_you_mean(Settings, ("imap", "extra_folders", 1, "foldr")) == \
        " (did you mean folder?)"
    assert did_you_mean(Settings, ("severities", 1, "lable")) == " (did you mean label?)"


def test_invalid_yaml_gives_no_lines_but_no_crash() -> None:
    assert key_lines("a: [\n").lines == {}


def test_password_file_is_read_stripped_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "imap").write_text("s3cret\n")
    cfg = tmp_path / "mailflow.yaml"
    cfg.write_text("imap:\n  password_file: secrets/imap\n"
                   "smtp:\n  password_file: /nonexistent/smtp\n")
    s = load(cfg)
    assert s.imap.password_file == tmp_path / "secrets" / "imap"
    assert s.imap.secret() == "s3cret"
    assert "s3cret" not in repr(s)
    with pytest.raises(CredentialError, match="cannot read password_file /nonexistent/smtp"):
        s.smtp.secret()
    (tmp_path / "secrets" / "imap").write_text("  \n")
    with pytest.raises(CredentialError, match="is empty"):
        s.imap.secret()


def test_password_file_excludes_the_other_sources(tmp_path: Path) -> None:
    probs = _problems(tmp_path, "imap:\n  password_file: x\n  password_env: Y\n"
                                "smtp:\n  auth: xoauth2\n  username: a@b\n"
                                "  token_file: t\n  password_file: p\n")
    assert probs[0].startswith("mailflow.yaml:1: imap: give only one of password_env, "
                               "password_file or password")
    assert "mailflow.yaml:4: smtp: auth: xoauth2 uses a token" in probs[1]
