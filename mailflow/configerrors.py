"""Where each key of ``mailflow.yaml`` sits, so configuration errors can say ``file:line``.

Rule files already report ``rules/x.yaml:3: ...``; the main configuration is edited by
the same people at the same odd hours. This module is pure: YAML text in, a map from
key paths to line numbers (and the duplicate keys, which PyYAML would silently let the
last one win) out, plus a "did you mean" for misspelt keys.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

Path_ = tuple[str, ...]
class ConfigError(Exception):
    """Every problem found in one configuration file, each already located."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# Values under these keys are never echoed back in an error.
SECRET_KEYS = {"password", "token"}


@dataclass
class KeyLines:
    """Line numbers (1-based) of every mapping key and list item, by key path."""

    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: list[tuple[Path_, int, int]] = field(default_factory=list)  # path, line, first

    def line_of(self, loc: typing.Sequence[Any]) -> int | None:
        """The line of the deepest part of ``loc`` that is in the file.

        A model-level error (``imap: give either password_env or password``) has the
        section's path; an unknown key has its own; a missing key has its parent's.
        """
        path = tuple(str(p) for p in loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def key_lines(text: str) -> KeyLines:
    """Walk the YAML node tree (no objects constructed) and record where keys are.

    Invalid YAML gives an empty map: the caller reports the syntax error on its own.
    """
    out = KeyLines()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out
    if root is not None:
        _walk(root, (), out)
    return out


def _walk(node: yaml.Node, path: Path_, out: KeyLines) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in seen:
                out.duplicates.append(((*path, key), line, seen[key]))
            else:
                seen[key] = line
                out.lines[(*path, key)] = line
            _walk(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.lines[(*path, str(i))] = item.start_mark.line + 1
            _walk(item, (*path, str(i)), out)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Pydantic models an annotation can hold (``X``, ``X | None``, ``list[X]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found


def known_keys(model: type[BaseModel], loc: typing.Sequence[Any]) -> list[str]:
    """The keys allowed in the mapping that holds ``loc[-1]``, following ``loc[:-1]``
    through the model's fields (list indexes and dict keys are stepped over)."""
    current: list[type[BaseModel]] = [model]
    for part in loc[:-1]:
        nxt: list[type[BaseModel]] = []
        for m in current:
            f = m.model_fields.get(str(part))
            if f is not None:
                nxt += _models_in(f.annotation)
        # An index or a dict key (severities: 1:): stay with the same models.
        current = nxt or ([] if isinstance(part, str) and not part.isdigit() else current)
    return sorted({name for m in current for name in m.model_fields
                   if not (m.model_fields[name].exclude)})


def did_you_mean(model: type[BaseModel], loc: typing.Sequence[Any]) -> str:
    """`` (did you mean poll_interval?)`` for a misspelt key, else ``""``."""
    if not loc:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), known_keys(model, loc), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def describe(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    """Turn one pydantic error into the sentence an administrator can act on."""
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    value = err.get("input")
    secret = any(p in SECRET_KEYS for p in loc)
    shown = "(hidden)" if secret else (f'"{value}"' if isinstance(value, str) else repr(value))
    if kind == "missing":
        msg = "is required"
    elif kind == "extra_forbidden":
        msg = "unknown key" + did_you_mean(model, err["loc"])
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        msg = f"must be an integer (got {shown})"
    elif kind in ("bool_parsing", "bool_type"):
        msg = f"must be true or false (got {shown})"
    elif kind in ("string_type",):
        msg = f"must be text (got {shown})"
    elif kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        msg = f"must be one of {expected} (got {shown})"
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        msg = f"{err['msg'].lower()} (got {shown})"
    elif kind == "string_pattern_mismatch":
        msg = f"has the wrong form (got {shown})"
    elif kind in ("list_type",):
        msg = f"must be a list (got {shown})"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = f"must be a mapping of keys (got {shown})"
    elif kind == "value_error":
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
    else:
        msg = err["msg"] if secret else f"{err['msg']} (got {shown})"
    # Value errors raised by model validators have no field: name the section.
    return f"{'.'.join(loc) or '(top level)'}: {msg}"
