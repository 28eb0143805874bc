"""Sample data for ``mailflow check``: each kind of mail rendered with what it will get.

Templates run with StrictUndefined, so a template naming a variable its mail never
receives fails ``check`` rather than a customer's mail. That only works if each
template is rendered with the variables *its* mail gets: the referral has a ``group``
and a ``history``, an acknowledgment has neither. :func:`sample_context` gives the
shared sample (``compose.SAMPLE_CONTEXT``) plus the variables of that kind.

Values include template syntax and markup on purpose: they must come out as written
(text) or escaped (HTML), never evaluated.
"""

from __future__ import annotations

from typing import Any

from mailflow.compose import SAMPLE_CONTEXT

_GROUP = {
    "name": "tier2",
    "description": "Second-line technical support",
    "address": "tier2@example.test",
    "leader": "tina.lead@example.test",
}
_SUBJECT = "Printer on fire {{ 7*7 }} <b> [SUP-1234]"
_WHEN = "Wed 2026-11-25 14:00 (Europe/Berlin)"
_UPDATE = {"text": "We replaced the fuser.\n{% raw %} <script>alert(1)</script>"}

# Variables per template kind, on top of SAMPLE_CONTEXT (docs/templates.md lists them).
SAMPLES: dict[str, dict[str, Any]] = {
    "referral": {
        "subject": _SUBJECT,
        "group": _GROUP,
        "referral": {
            "by": "rule technical-second-line",
            "reason": "error report with logs <attached>",
            "objectives": {"accept": "2h", "update": "8h", "resolve": "3d"},
            "accept_due": _WHEN,
            "resolve_due": "Sat 2026-11-28 10:00 (Europe/Berlin)",
        },
        "history": [
            {"when": "Wed 2026-11-25 09:58 (Europe/Berlin)",
             "who": "Ann Example <ann@example.test>",
             "text": "It started smoking at 9.\n{{ 7*7 }} <i>"},
            {"when": _WHEN, "who": "support desk", "text": "Acknowledged as SUP-1234."},
        ],
    },
    "status-referred": {"subject": _SUBJECT, "group": _GROUP, "next_update": _WHEN},
    "status-accepted": {"subject": _SUBJECT, "group": _GROUP, "eta": _WHEN,
                        "next_update": None, "update": _UPDATE},
    "status-update": {"subject": _SUBJECT, "group": _GROUP, "update": _UPDATE, "eta": _WHEN,
                      "next_update": None},
    "status-eta-changed": {"subject": _SUBJECT, "group": _GROUP, "eta": _WHEN,
                           "previous_eta": "Tue 2026-11-24 17:00 (Europe/Berlin)",
                           "update": _UPDATE},
    "status-resolved": {"subject": _SUBJECT, "group": _GROUP, "update": _UPDATE},
    "command-transcript": {
        "subject": _SUBJECT,
        "transcript": "Applied:\n\n  #accept  accepted\n  #eta 4h  expected resolution "
                      f"{_WHEN}\n\nYour text below the commands was relayed to the "
                      "customer. {{ 7*7 }} <b>\n",
    },
    "tier-reminder": {"subject": _SUBJECT, "group": _GROUP, "accepted_at": _WHEN},
    "forged-command-notice": {
        "subject": _SUBJECT,
        "group": _GROUP,
        "writer": {"address": "mallory@evil.example",
                   "why": "mallory@evil.example is not allowed to act for tier2 <b>"},
        "received_at": _WHEN,
        "commands": ["#status resolved", "#eta {{ 7*7 }}h"],
    },
    "escalation-notice": {
        "subject": _SUBJECT,
        "role": "reminder to the owner",
        "step": {"name": "first-response-reminder", "description": "Remind <b>them</b>",
                 "reason": "first response due 2026-11-25 14:00 CET (target 4h) {{ 7*7 }}",
                 "late": True, "chain": "technical"},
        "clock": {"kind": "first response", "due": _WHEN, "target": "4h", "policy": "high"},
        "owner": _GROUP,
    },
    "status-escalated": {"subject": _SUBJECT, "owner": _GROUP, "next_update": _WHEN,
                         "step": {"name": "first-response-missed", "description": "",
                                  "reason": "", "late": False, "chain": "technical"},
                         "clock": {"kind": "first response", "due": _WHEN, "target": "4h",
                                   "policy": "high"}, "role": "customer"},
    "escalation-request": {
        "subject": _SUBJECT, "owner": _GROUP, "asked_at": _WHEN,
        "clocks": [{"kind": "first response", "state": "running", "due": _WHEN,
                    "target": "4h", "policy": "high <b>"}],
    },
    "status-commitments": {
        "subject": _SUBJECT, "owner": _GROUP, "asked_at": _WHEN,
        "clocks": [{"kind": "first response", "state": "running", "due": _WHEN,
                    "target": "4h", "policy": "high"},
                   {"kind": "resolution", "state": "paused", "due": None, "target": "3d",
                    "policy": "high"}],
    },
}

# Mail to the administrator, about mailflow itself (no ticket, no customer subject).
ADMIN_SAMPLES: dict[str, dict[str, Any]] = {
    "admin-alert": {
        "alert": {"state": "down", "part": "mailbox support@example.test/INBOX",
                  "kind": "mailbox", "since": "2026-11-25T09:58:00+00:00",
                  "last_error": "login refused: [AUTHENTICATIONFAILED] {{ 7*7 }} <b>",
                  "last_success": None, "host": "mail-1", "at": "2026-11-25T10:03:00+00:00",
                  "note": ""},
    },
}


def sample_context(name: str) -> dict[str, Any]:
    """What ``mailflow check`` renders template ``name`` with."""
    if name == "digest":
        # The digest's variables are the figures of a day: a generated sample day.
        from mailflow.digest.sample import sample_context as digest_sample

        return {**SAMPLE_CONTEXT, **digest_sample()}
    return {**SAMPLE_CONTEXT, **SAMPLES.get(name, {}), **ADMIN_SAMPLES.get(name, {})}
