"""The malloc arena cap: set on glibc, never over the administrator's own setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mailflow.memory import fewer_malloc_arenas


def test_an_administrators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert fewer_malloc_arenas() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_cap() -> None:
    # In a fresh process without the variable, as `mailflow run` starts.
    code = "from mailflow.memory import fewer_malloc_arenas; print(fewer_malloc_arenas())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.strip()
    assert out == "True"
