"""A customer's satisfaction rating, given by replying with a number 1-5: pure.

The resolution mail asks for it as a reply, not a link (link scanners click links).
A reply that is just the number, with a few words, is recorded on the ticket and does
not reopen it; anything that reads like the problem is still there is not a rating,
so that mail reopens the ticket as any reply would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rating:
    """A customer's 1-5 satisfaction rating, with the words that came with it."""

    value: int
    comment: str


# A reply that is just a rating: "4", "4 thanks!", "5/5", "3 - ok". Words that say the
# problem is still there make it a follow-up instead ("2 printers still broken"): a
# rating does not reopen the ticket, and such a mail must.
_RATING = re.compile(
    r"^\s*([1-5])(?:\s*(?:/|out\s+of|of)\s*5)?(?:\s*(?:stars?|points?))?"
    r"(?=$|[\s!.,:;)\-])[\s!.,:;)\-]*(.*?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_NOT_A_RATING = re.compile(
    r"\?|\b(still|again|not|cannot|can't|won't|doesn't|isn't|don't|broken|error|fail\w*|"
    r"problem|issue|down|help|wrong|but|reopen|nicht|noch|immer)\b",
    re.IGNORECASE,
)


def parse_rating(text: str) -> Rating | None:
    """A satisfaction rating when ``text`` is just a number 1-5 with a few words."""
    m = _RATING.match(text)
    if not m:
        return None
    comment = m.group(2).strip()
    if len(comment) > 200 or comment.count("\n") > 2 or _NOT_A_RATING.search(comment):
        return None
    return Rating(int(m.group(1)), comment)
