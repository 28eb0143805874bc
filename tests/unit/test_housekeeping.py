"""What an administrator looks for next to the code: the licence, the changelog, and
shell completion as the README documents it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
MAILFLOW = [sys.executable, "-c", "from mailflow.cli import main; main(prog_name='mailflow')"]


def test_license_is_the_apache_2_text_pyproject_declares() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()


def test_changelog_has_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.index("## Unreleased") < text.index("## 0.1.0")


def test_completion_script_as_documented() -> None:
    assert "_MAILFLOW_COMPLETE=bash_source mailflow" in (ROOT / "README.md").read_text()
    env = dict(os.environ, _MAILFLOW_COMPLETE="bash_source")
    out = subprocess.run(MAILFLOW,
                         env=env, capture_output=True, text=True, check=True).stdout
    assert "_mailflow_completion" in out and "complete " in out
    words = subprocess.run(MAILFLOW,
                           env=dict(os.environ, _MAILFLOW_COMPLETE="bash_complete",
                                    COMP_WORDS="mailflow tic", COMP_CWORD="1"),
                           capture_output=True, text=True, check=True).stdout
    assert "tickets" in words
