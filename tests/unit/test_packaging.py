"""Templates and example rules ship inside the wheel, not only in a source checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_wheel_contains_templates_and_rules(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("mailflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mailflow/_defaults/templates/acknowledgment.txt.j2" in names
    assert "mailflow/_defaults/templates/acknowledgment.html.j2" in names
    assert "mailflow/_defaults/rules/classify.yaml" in names
    assert "mailflow/_defaults/rules/lists/vip.yaml" in names
    assert "mailflow/store/migrations/versions/0001_initial_schema.py" in names
    assert "mailflow/store/migrations/script.py.mako" in names
