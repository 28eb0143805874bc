"""Message-IDs we take in, and so may echo in In-Reply-To and References.

An id is echoed into the headers of our acknowledgments, so it is customer text that
reaches an outgoing header. Only a valid RFC 5322 ``msg-id`` (section 3.6.4: dot-atom
text, ``@``, dot-atom text or a domain literal; ASCII, no white space) is kept. ``=?``
is atext, so ``<=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXM=?=@evil.test>`` is valid syntax, yet
Python's header parser decodes it as an encoded word on the way out and writes the CR
LF it hides (issue 10, item 1): ids holding ``=?`` are refused as well. An id that is
refused is not echoed at all; the mail is still taken in (deduplicated by content).
"""

from __future__ import annotations

import re

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]*\]"
# obs-id-left (section 4.5.4) as old mailers write it: a quoted string, here without
# white space or backslashes ("cata.hud.a:131600:20001226214727"@hud.ac.uk).
_QUOTED = r'"[\x21\x23-\x5b\x5d-\x7e]+"'
_VALID = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})@(?:{_DOT_ATOM}|{_LITERAL})")
_BRACKETED = re.compile(r"<([^<>]*)>")
# Long enough for every real id seen; a header line must stay under 998 octets.
MAX_LENGTH = 250


def valid_msg_id(value: str) -> bool:
    """Is ``value`` (without angle brackets) an id we may write into a header?"""
    return (len(value) <= MAX_LENGTH and "=?" not in value
            and _VALID.fullmatch(value) is not None)


def message_ids(value: str | None) -> list[str]:
    """The valid ids in a Message-ID, In-Reply-To or References value, in order."""
    if not value:
        return []
    found = _BRACKETED.findall(value)
    if not found and value.strip() and " " not in value.strip():
        found = [value.strip()]  # some mailers omit the angle brackets
    return [m for m in (f.strip() for f in found) if valid_msg_id(m)]
