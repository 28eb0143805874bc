"""Templates to an :class:`~email.message.EmailMessage` with the right headers.

Customer text is only ever a template *variable*: it is never template source, HTML
parts autoescape it, and nothing a customer wrote can put a line break into a header.
StrictUndefined makes a template that names an unknown variable fail ``mailflow
check`` instead of a customer's mail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
)
from jinja2.sandbox import SandboxedEnvironment

from mailflow.resources import default_templates_dir

_CTRL = re.compile(r"[\r\n\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+")


def header_safe(value: str, limit: int = 900) -> str:
    """One line, no control characters: CR/LF can never reach a header."""
    return _CTRL.sub(" ", value).strip()[:limit]


@dataclass(frozen=True)
class Envelope:
    """Addressing for one outgoing mail; everything here becomes a header."""

    mail_from: str
    from_name: str
    to: str
    message_id: str
    date: datetime
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: str | None = "auto-replied"
    extra_headers: tuple[tuple[str, str], ...] = ()


class TemplateProblem(Exception):
    def __init__(self, where: str, what: str):
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what


def quote_text(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


class Composer:
    """Renders ``NAME.txt.j2`` + ``NAME.html.j2`` into multipart/alternative mail.

    Administrators override a shipped template by putting a file of the same name in
    their ``templates_dir``; the shipped one is used otherwise.
    """

    def __init__(self, templates_dir: Path | None):
        dirs = [str(templates_dir)] if templates_dir and templates_dir.is_dir() else []
        dirs.append(str(default_templates_dir()))
        # Sandboxed: template authors are administrators, but a sandbox costs nothing
        # here and keeps a template from reaching into Python objects.
        common: dict[str, Any] = {
            "undefined": StrictUndefined,
            "keep_trailing_newline": True,
            "trim_blocks": True,
            "lstrip_blocks": True,
        }
        self._loader = ChoiceLoader([FileSystemLoader(d) for d in dirs])
        self.text_env: Environment = SandboxedEnvironment(
            loader=self._loader, autoescape=False, **common
        )
        self.html_env: Environment = SandboxedEnvironment(
            loader=self._loader, autoescape=True, **common
        )
        for env in (self.text_env, self.html_env):
            env.filters["quote"] = quote_text

    def names(self) -> list[str]:
        """Every template kind on offer (shipped or overridden)."""
        found = {n[: -len(".txt.j2")] for n in self._loader.list_templates()
                 if n.endswith(".txt.j2") and not n.startswith("_")}
        return sorted(found)

    def source_path(self, filename: str) -> str:
        for loader in self._loader.loaders:
            assert isinstance(loader, FileSystemLoader)
            for base in loader.searchpath:
                p = Path(base) / filename
                if p.is_file():
                    return str(p)
        return filename

    def render(self, name: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
        """Return (subject, text, html); raise TemplateProblem located at file:line."""
        txt_name, html_name = f"{name}.txt.j2", f"{name}.html.j2"
        loaded: list[Template] = []
        try:
            txt = self.text_env.get_template(txt_name)
            loaded.append(txt)
            tctx = txt.new_context(dict(context))
            if "subject" not in txt.blocks or "body" not in txt.blocks:
                raise TemplateProblem(self.source_path(txt_name),
                                      "needs a {% block subject %} and a {% block body %}")
            subject = "".join(txt.blocks["subject"](tctx))
            text = "".join(txt.blocks["body"](tctx))
            html_t = self.html_env.get_template(html_name)
            loaded.append(html_t)
            html = html_t.render(dict(context))
        except TemplateSyntaxError as exc:
            raise TemplateProblem(f"{exc.filename or exc.name}:{exc.lineno}", exc.message or
                                  "syntax error") from None
        except TemplateError as exc:
            raise TemplateProblem(_where(exc, loaded, self.source_path(txt_name)),
                                  str(exc)) from None
        return header_safe(subject), text.strip() + "\n", html

    def build(self, name: str, context: Mapping[str, Any], env: Envelope) -> EmailMessage:
        subject, text, html = self.render(name, context)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = formataddr((header_safe(env.from_name), env.mail_from))
        msg["To"] = header_safe(env.to)
        msg["Subject"] = subject
        msg["Date"] = format_datetime(env.date)
        msg["Message-ID"] = f"<{env.message_id}>"
        if env.reply_to:
            msg["Reply-To"] = env.reply_to
        if env.in_reply_to:
            msg["In-Reply-To"] = f"<{header_safe(env.in_reply_to)}>"
        if env.references:
            # RFC 5322 3.6.4; long chains are trimmed to the first and the last few.
            refs = list(env.references)
            refs = refs if len(refs) <= 10 else refs[:1] + refs[-9:]
            msg["References"] = " ".join(f"<{header_safe(r)}>" for r in refs)
        if env.auto_submitted:
            # RFC 3834 section 5: automatic mail says so; Exchange honours the second.
            msg["Auto-Submitted"] = env.auto_submitted
            msg["X-Auto-Response-Suppress"] = "All"
        for k, v in env.extra_headers:
            msg[k] = header_safe(v)
        msg.set_content(text, cte="quoted-printable")
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
        return msg


def _where(exc: BaseException, templates: list[Template], fallback: str) -> str:
    """file:line of a runtime template error: map the compiled frame back to the
    template's own line (Jinja does this only for ``render()``)."""
    by_file = {t.filename: t for t in templates if t.filename}
    where = fallback
    tb = exc.__traceback__
    while tb is not None:
        t = by_file.get(tb.tb_frame.f_code.co_filename)
        if t is not None:
            where = f"{t.filename}:{t.get_corresponding_lineno(tb.tb_lineno)}"
        tb = tb.tb_next
    return where


# Sample data that `mailflow check` renders every template with.
SAMPLE_CONTEXT: dict[str, Any] = {
    "ticket": {
        "ref": "SUP-1234",
        "subject": "Printer on floor 3 is on fire {{ 7*7 }} <b>",
        "severity": 2,
        "severity_label": "high",
        "first_response": "4 hours",
        "category": "technical",
        "owner_group": "tier2",
        "status": "open",
    },
    "customer": {"name": "Ann Example", "address": "ann@example.test"},
    "message": {
        "text": "It started smoking at 9.\n{% raw %} <script>alert(1)</script>",
        "subject": "Printer on fire",
    },
    "support_address": "support@example.test",
    "reply_address": "support+1234.abcdefghijkm@example.test",
}
