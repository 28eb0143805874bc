"""Issue 10, items 2 and 4 at the SMTP edge: the envelope names exactly the address we
mean, and an address the server cannot take is a permanent DeliveryError, never an
exception that stops the outbox."""

from __future__ import annotations

import asyncio

import aiosmtplib
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
    """Just enough of aiosmtplib.SMTP to see which commands send() writes."""

    def __init__(self, smtputf8: bool, refuse_rcpt: int = 0):
        self.smtputf8 = smtputf8
        self.refuse_rcpt = refuse_rcpt
        self.is_ehlo_or_helo_needed = False
        self.is_connected = True
        self.lines: list[bytes] = []
        self.data_sent: list[bytes] = []
        self.calls: list[tuple[str, list[str], list[str]]] = []

    def supports_extension(self, name: str) -> bool:
        return name == "size" or (name == "smtputf8" and self.smtputf8)

    async def execute_command(self, *args: bytes) -> aiosmtplib.SMTPResponse:
        self.lines.append(b" ".join(args))
        if args[0] == b"MAIL":
            # (sender, [recipient], options but SIZE): what sendmail was asked before
            self.calls.append((args[1][6:-1].decode(), [],
                               [o.decode() for o in args[2:] if not o.startswith(b"SIZE=")]))
        elif args[0] == b"RCPT":
            self.calls[-1][1].append(args[1][4:-1].decode())
            if self.refuse_rcpt:
                return aiosmtplib.SMTPResponse(self.refuse_rcpt, "no such user")
        return aiosmtplib.SMTPResponse(250, "OK")

    async def data(self, raw: bytes) -> aiosmtplib.SMTPResponse:
        self.data_sent.append(raw)
        return aiosmtplib.SMTPResponse(250, "OK queued")

    async def rset(self) -> aiosmtplib.SMTPResponse:
        self.lines.append(b"RSET")
        return aiosmtplib.SMTPResponse(250, "OK")


def _transport(smtputf8: bool, refuse_rcpt: int = 0) -> tuple[SmtpTransport, _FakeClient]:
    t = SmtpTransport.__new__(SmtpTransport)
    client = _FakeClient(smtputf8, refuse_rcpt)
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


def test_one_transaction_writes_mail_rcpt_data_with_the_wire_size() -> None:
    t, client = _transport(smtputf8=False)
    answer = asyncio.run(t.send("support@example.test", "ann@example.test", b"a\nb\r\n"))
    assert answer == "OK queued" and client.data_sent == [b"a\nb\r\n"]
    assert client.lines == [b"MAIL FROM:<support@example.test> SIZE=6",
                            b"RCPT TO:<ann@example.test>"]


@pytest.mark.parametrize(("code", "permanent"), [(550, True), (451, False)])
def test_refused_recipient_resets_the_envelope(code: int, permanent: bool) -> None:
    t, client = _transport(smtputf8=False, refuse_rcpt=code)
    with pytest.raises(DeliveryError) as err:
        asyncio.run(t.send("support@example.test", "ann@example.test", RAW))
    assert err.value.permanent is permanent and str(err.value) == f"{code} no such user"
    assert client.lines[-1] == b"RSET" and client.data_sent == []
