"""The referral and status templates render with the variables their mail gets."""

from __future__ import annotations

import pytest

from mailflow.compose import Composer
from mailflow.template_samples import SAMPLES, sample_context

COMPOSER = Composer(None)


def test_every_shipped_template_renders_with_its_sample() -> None:
    # What `mailflow check` does once it renders each kind with sample_context(name).
    assert set(SAMPLES) <= set(COMPOSER.names())
    for name in COMPOSER.names():
        subject, text, html = COMPOSER.render(name, sample_context(name))
        assert subject and text.strip() and "<html>" in html, name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_customer_and_tier_text_is_never_evaluated_and_escaped_in_html(name: str) -> None:
    subject, text, html = COMPOSER.render(name, sample_context(name))
    assert "49" not in subject + text and "{{ 7*7 }}" in subject
    assert subject.count("[SUP-1234]") == 1
    # Sample values carry <b>, <i> and <script>; the templates' own markup uses none.
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html


def test_resolution_asks_for_a_rating_by_reply_without_links() -> None:
    _, text, html = COMPOSER.render("status-resolved", sample_context("status-resolved"))
    assert "just reply" in text and "number from 1" in text
    assert "http" not in text and "href" not in html


def test_optional_times_may_be_missing() -> None:
    ctx = {**sample_context("status-accepted"), "eta": None, "next_update": None,
           "update": {"text": ""}}
    _, text, _ = COMPOSER.render("status-accepted", ctx)
    assert "Expected resolution" not in text and "Next update" not in text
    ctx = {**sample_context("referral")}
    ctx["referral"] = {**ctx["referral"], "objectives": None}
    assert "No objectives" in COMPOSER.render("referral", ctx)[1]
