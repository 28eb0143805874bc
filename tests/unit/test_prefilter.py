"""Regex prefilters may make rules faster, never change what they match."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow.classify.conditions import regex_matcher
from mailflow.classify.prefilter import required_literals


@pytest.mark.parametrize("pattern, needles", [
    ("(is|are|went) (down|offline)|cannot (log ?in|connect)|nobody can",
     ("cannot ", "down", "nobody can", "offline")),
    (r"acme (storevault|sv-?\d+)", ("acme ",)),
    (r"\d+ errors?", (" error",)),
    ("disk( is)? full", (" full",)),
    ("(?:abc)+d", ("abc",)),
    ("down|", ()),  # the empty alternative matches anywhere
    ("(?i:disk) full", ()),  # case-folded literal: not safe to look for verbatim
    ("a?b*c", ()),  # nothing of length 2 is required
    ("[ab]x", ()),
    (r"(down)\1", ("down",)),
])
def test_required_literals(pattern: str, needles: tuple[str, ...]) -> None:
    assert required_literals(re.compile(pattern)) == needles


def test_ignorecase_patterns_get_no_prefilter() -> None:
    assert required_literals(re.compile("disk full", re.IGNORECASE)) == ()
    # Escapes that change meaning when lower-cased keep IGNORECASE: no prefilter.
    assert regex_matcher(r"ERR\D+").needles == ()


def test_matcher_skips_the_regex_when_no_literal_occurs() -> None:
    m = regex_matcher("(is|are) (down|offline)|nobody can")
    assert m.needles
    assert m.search("the server is down since 9") == "is down"
    assert m.search("everything is fine") is None


_ATOMS = st.sampled_from(["a", "b", "ab", "ba", " ", "abc", ".", "[ab]", r"\d", "1"])


def _regex() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, inner).map("".join),
            st.tuples(inner, inner).map("|".join),
            inner.map(lambda r: f"({r})"),
            inner.map(lambda r: f"(?:{r})?"),
            inner.map(lambda r: f"(?:{r})+"),
            inner.map(lambda r: f"(?:{r})*"),
            inner.map(lambda r: f"(?:{r}){{1,2}}"),
            inner.map(lambda r: f"(?:{r}){{0,2}}"),
            inner.map(lambda r: f"(?=a){r}"),
        )
    return st.recursive(_ATOMS, extend, max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(_regex(), st.text(alphabet="ab1 c", max_size=30))
def test_prefilter_never_changes_the_result(pattern: str, text: str) -> None:
    plain = re.compile(pattern).search(text)
    got = regex_matcher(pattern).search(text)
    assert (got is None) == (plain is None)
    if plain is not None:
        assert got == plain.group(0)
