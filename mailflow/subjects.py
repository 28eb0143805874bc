"""Subjects of the mail we send: exactly one ticket tag, ours, and no pile of ``Re:``.

A customer who quotes another ticket's tag, or a thread that went back and forth ten
times, must not give ``Re: Re: RE: AW: something [SUP-1] [SUP-2]``: people read the
subject first, and a second tag makes them (and the subject-tag threading of
mailflow.linking) unsure which ticket this is. Pure string work.
"""

from __future__ import annotations

import re

# Reply and forward prefixes of the mail clients we see (RFC 5322 3.6.5 names only
# "Re:"; Outlook translates it): Re, Aw/Antw (de/nl), Sv/Vs (nordic), Odp (pl),
# R/Rif (it), Res/Resp (pt), Ynt (tr), Fw/Fwd, Wg (de), Tr (fr), Rv/Enc (es/pt),
# Doorst (nl), Vl (fi); with an optional count as in "Re[2]:" or "Re(2):".
_REPLY = re.compile(
    r"^(?:re|aw|antw|antwort|sv|vs|odp|r|rif|res|resp|ynt|fw|fwd|wg|tr|rv|enc|doorst|vl)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")


def _tag(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"\[\s*{re.escape(prefix)}\s*-\s*\d+\s*\]", re.IGNORECASE)


def base_subject(subject: str, prefix: str) -> str:
    """The subject without reply/forward prefixes and without any of our tags."""
    tag = _tag(prefix)
    s = _SPACE.sub(" ", subject or "").strip()
    while True:
        before = s
        s = _REPLY.sub("", s, count=1).lstrip()
        m = tag.match(s)
        if m:
            s = s[m.end():].lstrip()
        if s == before:
            break
    s = _SPACE.sub(" ", tag.sub(" ", s)).strip()
    return s.strip(" -:")


def clean_subject(subject: str, prefix: str, ticket_ref: str | int, *, reply: bool = False,
                  empty: str = "Your request") -> str:
    """``something [SUP-2]`` (``Re: something [SUP-2]`` with ``reply``): one tag, ours.

    ``ticket_ref`` is ``SUP-2`` or the number 2; ``empty`` stands in for a subject that
    was nothing but prefixes and tags.
    """
    ref = f"{prefix}-{ticket_ref}" if isinstance(ticket_ref, int) else ticket_ref.strip("[] ")
    line = f"{base_subject(subject, prefix) or empty} [{ref}]"
    return f"Re: {line}" if reply else line
