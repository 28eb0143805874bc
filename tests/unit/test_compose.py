"""Customer text stays inert: no template evaluation, escaped HTML, no header breaks."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from mailflow.compose import SAMPLE_CONTEXT, Composer, Envelope, TemplateProblem

ENV = Envelope(mail_from="support@example.test", from_name="Support",
               to="ann@example.test", message_id="mf.1.abcdefghijkm.1@example.test",
               date=datetime(2026, 1, 5, tzinfo=UTC), in_reply_to="orig@x.test",
               references=("orig@x.test",))


def _ctx(subject: str, text: str) -> dict:
    ctx = {**SAMPLE_CONTEXT}
    ctx["message"] = {"subject": subject, "text": text}
    return ctx


def test_hostile_customer_text_is_inert_in_both_parts() -> None:
    subject = "Help\r\nBcc: victim@example.test {{ 7*7 }} {% if 1 %}x{% endif %} <b>bold</b>"
    text = "{{ 7*7 }} {% for x in range(3) %}loop{% endfor %} <script>alert(1)</script>"
    raw = Composer(None).build("acknowledgment", _ctx(subject, text), ENV).as_bytes()
    m = message_from_bytes(raw, policy=default)
    assert m["Bcc"] is None and "\n" not in m["Subject"] and "\r" not in m["Subject"]
    assert "{{ 7*7 }}" in m["Subject"] and "49" not in m["Subject"]
    plain = m.get_body(("plain",)).get_content()
    html = m.get_body(("html",)).get_content()
    assert "{{ 7*7 }}" in plain and "loop" not in plain.replace("{% for x in range(3) %}loop", "")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "49" not in plain and "49" not in html


def test_headers_for_threading_and_rfc3834() -> None:
    raw = Composer(None).build("acknowledgment", SAMPLE_CONTEXT, ENV).as_bytes()
    m = message_from_bytes(raw, policy=default)
    assert m["In-Reply-To"] == "<orig@x.test>" and m["References"] == "<orig@x.test>"
    assert m["Auto-Submitted"] == "auto-replied" and m["X-Auto-Response-Suppress"] == "All"
    assert m["Message-ID"] == "<mf.1.abcdefghijkm.1@example.test>"


def test_override_and_unknown_variable_is_located(tmp_path: Path) -> None:
    (tmp_path / "acknowledgment.txt.j2").write_text(
        "{% block subject %}Hi{% endblock %}\n{% block body %}\nline\n{{ nope.x }}\n"
        "{% endblock %}\n")
    with pytest.raises(TemplateProblem) as e:
        Composer(tmp_path).render("acknowledgment", SAMPLE_CONTEXT)
    assert str(tmp_path / "acknowledgment.txt.j2") in str(e.value)
    assert ":4" in str(e.value) and "nope" in str(e.value)


def test_syntax_error_is_located(tmp_path: Path) -> None:
    (tmp_path / "acknowledgment.html.j2").write_text("<p>\n{% if %}\n")
    with pytest.raises(TemplateProblem) as e:
        Composer(tmp_path).render("acknowledgment", SAMPLE_CONTEXT)
    assert "acknowledgment.html.j2:2" in str(e.value)
