"""Outgoing subjects: one tag, ours; no pile of reply prefixes."""

from __future__ import annotations

import pytest

from mailflow.subjects import base_subject, clean_subject


@pytest.mark.parametrize(("subject", "expected"), [
    ("Re: Re: something [SUP-1] [SUP-2]", "something [SUP-2]"),
    ("something", "something [SUP-2]"),
    ("something [SUP-2]", "something [SUP-2]"),
    ("[SUP-2] something", "something [SUP-2]"),
    ("RE: AW: Fwd: FW: something", "something [SUP-2]"),
    ("Re: [SUP-7] RE: something", "something [SUP-2]"),
    ("Re[2]: Re(3): something", "something [SUP-2]"),
    ("SV: VS: Odp: WG: TR: something", "something [SUP-2]"),
    ("re:re:something", "something [SUP-2]"),
    ("Printer  on\r\n fire", "Printer on fire [SUP-2]"),
    ("[sup-1] Re: [ SUP - 3 ] something", "something [SUP-2]"),
    ("Re: ", "Your request [SUP-2]"),
    ("", "Your request [SUP-2]"),
    ("Re: [SUP-1]", "Your request [SUP-2]"),
    ("Re: Report: disk [EXTERNAL] full", "Report: disk [EXTERNAL] full [SUP-2]"),
    ("Are you there?", "Are you there? [SUP-2]"),
    ("Fwd: Sale of [ACME-12] units", "Sale of [ACME-12] units [SUP-2]"),
])
def test_clean_subject(subject: str, expected: str) -> None:
    assert clean_subject(subject, "SUP", "SUP-2") == expected


def test_number_reference_reply_and_empty() -> None:
    assert clean_subject("Re: x [SUP-1]", "SUP", 2, reply=True) == "Re: x [SUP-2]"
    assert clean_subject("", "SUP", 2, empty="(no subject)") == "(no subject) [SUP-2]"
    assert clean_subject("x", "SUP", "[SUP-2]") == "x [SUP-2]"


def test_base_subject_is_idempotent() -> None:
    once = base_subject("RE: Re: AW: a [SUP-1] b", "SUP")
    assert once == "a b" and base_subject(once, "SUP") == once
    assert clean_subject(clean_subject("Re: a", "SUP", 5, reply=True), "SUP", 5) == "a [SUP-5]"
