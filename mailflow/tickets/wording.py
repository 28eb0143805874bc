"""Durations in words for the mail we send: what an acknowledgment promises, and what
a tier group agreed. Pure string work, shared by ingest and the referral decisions."""

from __future__ import annotations

import re
from datetime import timedelta

from mailflow.subjects import base_subject

_UNIT_WORDS = {"m": "minute", "h": "hour", "d": "day", "w": "week"}


def business_words(text: str) -> str:
    """``4h`` -> ``4 business hours``; ``1d`` -> ``1 business day`` (as sla.yaml says it:
    a day there is a working day of the calendar, not 24 hours)."""
    m = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if not m:
        return f"{text} of business time"
    n, unit = int(m.group(1)), _UNIT_WORDS[m.group(2)]
    return f"{n} business {unit}{'s' if n != 1 else ''}"


def human_duration(td: timedelta) -> str:
    """``4 hours``, ``1 day``: what an acknowledgment promises, in words."""
    from mailflow.config import format_duration

    seconds = int(td.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return format_duration(td)


def plain_subject(subject: str, prefix: str) -> str:
    """subjects.base_subject, without its regular expressions for the common subject
    that has no prefix, no tag and no run of blanks (most new mail: ingest's hot path)."""
    if ":" in subject or "[" in subject or "  " in subject or "\t" in subject \
            or "\n" in subject:
        return base_subject(subject, prefix)
    return subject.strip().strip(" -")
