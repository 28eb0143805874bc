"""Issue 10, items 2 and 4 at the SMTP edge: the envelope names exactly the address we
mean, and an address the server cannot take is a permanent DeliveryError, never an
exception that stops the outbox."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mailflow.smtp import DeliveryError, SmtpTransport, command_line_safe


@pytest.mark.parametrize(("addr", "ok"), [
    ("ann@example.test", True),
    ("a+b.c@xn--mchine-bua.example", True),
    ('"x <victim@evil.test>"@mallory.test', False),
    ("a@b.test\r\nRCPT TO:<victim@evil.test>", False),
    ("<a@b.test>", False),
    (" a@b.test", False),
    ("", False),
    ("a@b.test (victim@evil.test)", False),
])
def test_command_line_safe(addr: str, ok: bool) -> None:
    assert command_line_safe(addr) is ok


class _FakeClient:
    """Just enough of aiosmtplib.SMTP to see what send() asks of it."""

    def __init__(self, smtputf8: bool):
        self.smtputf8 = smtputf8
        self.is_ehlo_or_helo_needed = False
        self.calls: list[tuple[str, list[str], list[str]]] = []

    def supports_extension(self, name: str) -> bool:
        return name == "smtputf8" and self.smtputf8

    async def sendmail(self, sender: str, rcpts: list[str], raw: bytes,
                       mail_options: list[str]) -> tuple[dict[str, Any], str]:
        self.calls.append((sender, rcpts, mail_options))
        return {}, "250 OK"


def _transport(smtputf8: bool) -> tuple[SmtpTransport, _FakeClient]:
    t = SmtpTransport.__new__(SmtpTransport)
    client = _FakeClient(smtputf8)
    t.client = client  # type: ignore[assignment]
    t.settings = type("S", (), {"host": "smtp.test"})()  # type: ignore[assignment]
    return t, client


RAW = b"Subject: x\r\n\r\nhi\r\n"


def test_idn_domain_goes_out_as_a_labels_without_smtputf8() -> None:
    t, client = _transport(smtputf8=False)
    asyncio.run(t.send("support@example.test", "u@m\u00e4chine.example", RAW))
    assert client.calls == [("support@example.test", ["u@xn--mchine-bua.example"], [])]


def test_non_ascii_local_part_asks_for_smtputf8() -> None:
    t, client = _transport(smtputf8=True)
    asyncio.run(t.send("support@example.test", "jd\u00f6e@m\u00e4chine.example", RAW))
    assert client.calls == [("support@example.test", ["jd\u00f6e@xn--mchine-bua.example"],
                             ["SMTPUTF8"])]


def test_non_ascii_local_part_without_smtputf8_is_a_permanent_failure() -> None:
    t, client = _transport(smtputf8=False)
    with pytest.raises(DeliveryError) as err:
        asyncio.run(t.send("support@example.test", "jd\u00f6e@m\u00e4chine.example", RAW))
    assert err.value.permanent and "SMTPUTF8" in str(err.value) and client.calls == []


def test_misleading_address_is_a_permanent_failure() -> None:
    t, client = _transport(smtputf8=True)
    with pytest.raises(DeliveryError) as err:
        asyncio.run(t.send("support@example.test", '"x <victim@evil.test>"@mallory.test', RAW))
    assert err.value.permanent and client.calls == []
