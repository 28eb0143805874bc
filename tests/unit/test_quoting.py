from __future__ import annotations

from mailflow.quoting import split_reply


def test_gmail_style() -> None:
    r = split_reply("Thanks, works now.\n\nOn Mon, 5 Jan 2026 at 09:00, Support <s@x.test> "
                    "wrote:\n> old text\n")
    assert r.new == "Thanks, works now." and "old text" in r.quoted


def test_wrapped_wrote_line() -> None:
    r = split_reply("Yes.\n\nOn Mon, 5 Jan 2026 at 09:00, Support Desk\n<s@x.test> wrote:\n> q")
    assert r.new == "Yes."


def test_outlook_without_markers() -> None:
    r = split_reply("Still broken.\n\nFrom: Support <s@x.test>\nSent: Monday\nTo: me\n"
                    "Subject: Re: x\n\nold")
    assert r.new == "Still broken."


def test_original_message_and_german() -> None:
    assert split_reply("Neu\n-----Original Message-----\nalt").new == "Neu"
    assert split_reply("Neu\n\nAm 05.01.2026 um 09:00 schrieb Support <s@x.test>:\n> alt"
                       ).new == "Neu"


def test_signature_and_mobile_footer() -> None:
    assert split_reply("Body\n-- \nAnn\nPhone 123").new == "Body"
    assert split_reply("Body\n\nSent from my iPhone").new == "Body"


def test_bottom_quote_only_and_all_quoted_keeps_text() -> None:
    assert split_reply("My answer\n\n> quoted\n> more\n").new == "My answer"
    assert split_reply("> only quotes\n").new == "> only quotes"


def test_forwarded_mail_is_kept() -> None:
    text = "FYI\n\n---------- Forwarded message ---------\nFrom: boss\n\nThe server is down"
    assert "The server is down" in split_reply(text).new
