"""Where the shipped default templates and example rules are.

In a wheel they travel inside the package (``mailflow/_defaults``, see pyproject); in a
source checkout or an editable install they are the top-level ``templates/`` and
``rules/`` directories that administrators read and copy.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    installed = _PACKAGE / "_defaults" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"shipped {name}/ not found next to {_PACKAGE}")


def default_templates_dir() -> Path:
    return _find("templates")


def default_rules_dir() -> Path:
    return _find("rules")
