"""The built wheel in a fresh virtualenv, as an administrator installs it: `init`,
`db upgrade`, `check`, then `demo`, which first names the extra it needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailflow import stackctl

ROOT = Path(__file__).parents[2]


@pytest.fixture
def place() -> Iterator[Path]:
    # Outside pytest's mode-700 tmp dir: the demo's Dovecot reads its users file here.
    root = Path(tempfile.mkdtemp(prefix="mailflow-wheel-test-"))
    root.chmod(0o755)
    yield root
    stackctl.stop(root / "demo" / "mailstack")
    shutil.rmtree(root, ignore_errors=True)


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # Nothing of this checkout may leak in: no PYTHONPATH, run from elsewhere.
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("MAILFLOW_")}
    return subprocess.run(args, cwd=cwd, env={**clean, **env}, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_wheel_in_a_fresh_venv(place: Path) -> None:
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "-q", "-w", str(place), str(ROOT)], place)
    assert built.returncode == 0, built.stderr
    [wheel] = place.glob("mailflow-*.whl")
    assert _run([sys.executable, "-m", "venv", str(place / "venv")], place).returncode == 0
    pip = [str(place / "venv" / "bin" / "python"), "-m", "pip", "install", "-q"]
    installed = _run([*pip, str(wheel)], place)
    assert installed.returncode == 0, installed.stderr
    mailflow = str(place / "venv" / "bin" / "mailflow")

    assert _run([mailflow, "init", "site"], place).returncode == 0
    site = place / "site"
    upgraded = _run([mailflow, "db", "upgrade"], site)
    assert upgraded.returncode == 0, upgraded.stderr
    checked = _run([mailflow, "check"], site, MAILFLOW_IMAP_PASSWORD="x",
                   MAILFLOW_SMTP_PASSWORD="y")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "configuration OK" in checked.stdout

    plain = _run([mailflow, "demo", "demo"], place)
    assert plain.returncode == 2
    assert "pip install 'mailflow[demo]'" in plain.stderr and "Traceback" not in plain.stderr
    assert not (place / "demo" / "mailstack").exists()

    extra = _run([*pip, f"{wheel}[demo]"], place)
    assert extra.returncode == 0, extra.stderr
    demo = _run([mailflow, "demo", "demo"], place)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "SUP-3" in demo.stdout and "automatic mail gets no acknowledgment" in demo.stdout
    assert not stackctl.running(place / "demo" / "mailstack")
