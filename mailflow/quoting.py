"""Separate what the person just wrote from quoted history and signature.

Ticket history and notifications should show the new words, not ten nested copies of
the thread. This is a line-based heuristic in the spirit of talon and
email_reply_trimmer: cut at the first reply header ("On ... wrote:", an Outlook
"From:/Sent:" block, "-----Original Message-----"), drop a trailing block of ``>``
lines, and cut the signature at "-- ". Forwarded mail is kept whole: what was forwarded
is usually the request itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "On Tue, 3 Mar 2026 at 10:00, Ann <a@x> wrote:" in the languages we see most; the
# header may wrap over two lines, so the pattern is tried on a line and its successor.
_WROTE = re.compile(
    r"^\s*(On\s.+\swrote|Am\s.+\sschrieb|Le\s.+\sa\s+écrit|El\s.+\sescribió|"
    r"Op\s.+\sschreef|Il\s.+\sha\s+scritto|Em\s.+\sescreveu|W\s+dniu\s.+\spisze|"
    r"Den\s.+\sskrev|.+\s<[^>]+@[^>]+>\s+(wrote|schrieb|a écrit))(\s[^:]*)?\s*:\s*$",
    re.IGNORECASE,
)
_ORIGINAL = re.compile(
    r"^\s*(-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine|"
    r"Mensaje original|Oorspronkelijk bericht|Messaggio originale)\s*-{2,})\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(From|Von|De|Van|Da)\s*:\*?\s+\S", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(
    r"^\s*\*?(Sent|Date|Gesendet|Datum|Envoyé|Enviado|Verzonden|Inviato|To|An|À)\s*:",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{20,}\s*$")
_SIGNATURE = re.compile(r"^-- ?$")
_MOBILE = re.compile(
    r"^\s*(Sent from my \w+|Sent from (Mail|Outlook) for|Get Outlook for|"
    r"Von meinem \w+ gesendet|Envoyé de mon)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Reply:
    new: str
    quoted: str
    signature: str


def _cut_index(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        # Every marker below contains ":", "-" or "_": most lines of prose skip all regexes.
        if ":" not in line and "-" not in line and "_" not in line \
                and not line.lstrip()[:3].lower().startswith(("on ", "am ", "le ")):
            continue
        if _ORIGINAL.match(line) or _WROTE.match(line):
            return i
        if i + 1 < len(lines):
            joined = f"{line.rstrip()} {lines[i + 1].strip()}"
            if line.strip().lower().startswith(("on ", "am ", "le ")) and _WROTE.match(joined):
                return i
        if _UNDERSCORES.match(line) and i + 1 < len(lines) and _OUTLOOK_FROM.match(lines[i + 1]):
            return i
        if _OUTLOOK_FROM.match(line) and any(
            _OUTLOOK_NEXT.match(nxt) for nxt in lines[i + 1 : i + 4]
        ):
            return i
    return None


def split_reply(text: str) -> Reply:
    """Split a plain-text body; never returns an empty ``new`` for a non-empty body."""
    lines = text.split("\n")
    quoted: list[str] = []
    cut = _cut_index(lines)
    if cut is not None and cut > 0:
        quoted = lines[cut:]
        lines = lines[:cut]
    # A trailing run of quoted lines (bottom-quoting without a header line).
    end = len(lines)
    while end > 0 and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    if end < len(lines) and any(line.startswith(">") for line in lines[end:]):
        quoted = lines[end:] + quoted
        lines = lines[:end]
    signature: list[str] = []
    for i, line in enumerate(lines):
        if i > 0 and (_SIGNATURE.match(line) or _MOBILE.match(line)):
            signature = lines[i:]
            lines = lines[:i]
            break
    new = "\n".join(lines).strip()
    if not new:
        # Everything looked like quote or signature: show the whole text rather than
        # nothing, so no customer words are ever hidden.
        return Reply(text.strip(), "", "")
    return Reply(new, "\n".join(quoted).strip(), "\n".join(signature).strip())
