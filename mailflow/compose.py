"""Templates to the bytes of a mail with the right headers (:mod:`mailflow.mimebytes`).

Customer text is only ever a template *variable*: it is never template source, HTML
parts autoescape it, and nothing a customer wrote can put a line break into a header.
StrictUndefined makes a template that names an unknown variable fail ``mailflow
check`` instead of a customer's mail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, SMTPUTF8
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

from mailflow import mimebytes
from mailflow.addresses import outgoing_address
from mailflow.msgid import valid_msg_id
from mailflow.resources import default_templates_dir

_CTRL = re.compile(r"[\r\n\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x85\u2028\u2029]+")
# U+2060 WORD JOINER: invisible, and it keeps "=?" from starting an encoded word.
_NO_EW = "=\u2060?"


def header_safe(value: str, limit: int = 900) -> str:
    """One line, no control characters: CR/LF can never reach a header."""
    return _CTRL.sub(" ", value).strip()[:limit]


def header_text(value: str, limit: int = 900) -> str:
    """Decoded text (a customer's subject) made safe to set as a header value.

    Python's header classes decode any ``=?charset?q?...?=`` in a value they are given
    and write what it decodes to, CR LF included (issue 10, item 1): a subject that
    arrived double-encoded would be decoded a second time on the way out and could add
    a ``Bcc:``. The text was decoded once already, so "=?" left in it is never an
    encoded word of ours: a word joiner keeps it from being read as one, here and by
    any mail client that decodes again.
    """
    text = header_safe(value, limit)
    while "=?" in text:
        text = text.replace("=?", _NO_EW)
    return text


def msg_id_list(ids: tuple[str, ...] | list[str]) -> list[str]:
    """Only valid ids are echoed (:mod:`mailflow.msgid`); rows queued before that check
    may still hold others."""
    return [i for i in ids if i and valid_msg_id(i)]


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
            # Templates change only through a new Composer (SIGHUP: tasks.reload), so
            # no stat() of the template files per mail.
            "auto_reload": False,
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
        """The mail of :meth:`build_bytes` as an ``EmailMessage`` (previews, tests);
        ``as_bytes()`` gives the same bytes back."""
        raw = self.build_bytes(name, context, env)
        utf8 = outgoing_address(header_safe(env.to))[1]
        policy = (SMTPUTF8 if utf8 else SMTP).clone(refold_source="none")
        msg = BytesParser(policy=policy).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        return msg

    def build_bytes(self, name: str, context: Mapping[str, Any], env: Envelope,
                    originals: Sequence[bytes] = ()) -> bytes:
        """The mail as sent: headers and MIME written directly (:mod:`mailflow.mimebytes`,
        a tenth of the ``email`` package's cost), the customer's ``originals`` attached
        as message/rfc822 (mail for tier groups)."""
        subject, text, html = self.render(name, context)
        # Domains go out as A-labels; only a non-ASCII local part needs RFC 6532 headers
        # (and SMTPUTF8, which mailflow.smtp asks for or fails that one mail with).
        to, utf8 = outgoing_address(header_safe(env.to))
        policy = SMTPUTF8 if utf8 else SMTP
        head = [mimebytes.to_header(policy, v) if k == "To" else
                mimebytes.address_header(policy, k, v) if k == "From" else
                mimebytes.header(policy, k, v) for k, v in _header_fields(env, subject, to)]
        return mimebytes.mail(head, text, html, originals)


def _mailbox(name: str, addr: str) -> str:
    """``name <addr>`` for the From header, all ASCII: a name quoted where it holds
    specials (``formataddr``), or, not ASCII, RFC 2047 words of at most 75 characters,
    written as they are (``mimebytes.address_header``) so that its specials ("Müller &
    Co.") stay inside them; the email package's registry folded such a name back
    unquoted, into a header no reader could parse."""
    if name.isascii():
        return formataddr((name, addr))
    words = Header(name, "utf-8", maxlinelen=75).encode(linesep="\n").split("\n")
    return " ".join(w.strip() for w in words) + f" <{addr}>"


def _header_fields(env: Envelope, subject: str, to: str) -> list[tuple[str, str]]:
    """Every header but the MIME ones, in order, each value free of line breaks and
    encoded-word starts (``To`` is checked again as it is written)."""
    fields = [("From", _mailbox(header_text(env.from_name), env.mail_from)),
              ("To", to),
              ("Subject", header_text(subject)),
              ("Date", format_datetime(env.date)),
              ("Message-ID", f"<{env.message_id}>")]
    if env.reply_to:
        fields.append(("Reply-To", header_safe(env.reply_to)))
    in_reply_to = msg_id_list([env.in_reply_to or ""])
    if in_reply_to:
        fields.append(("In-Reply-To", f"<{in_reply_to[0]}>"))
    refs = msg_id_list(env.references)
    if refs:
        # RFC 5322 3.6.4; long chains are trimmed to the first and the last few.
        refs = refs if len(refs) <= 10 else refs[:1] + refs[-9:]
        fields.append(("References", " ".join(f"<{r}>" for r in refs)))
    if env.auto_submitted:
        # RFC 3834 section 5: automatic mail says so; Exchange honours the second.
        fields += [("Auto-Submitted", header_safe(env.auto_submitted)),
                   ("X-Auto-Response-Suppress", "All")]
    fields += [(k, header_text(v)) for k, v in env.extra_headers]
    return fields


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
