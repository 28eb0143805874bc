"""SMTP delivery with aiosmtplib: the only module that speaks SMTP.

Errors come out as two kinds the outbox can act on: temporary (4xx, connection
trouble: retry later) and permanent (5xx: record and stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterator
from email.utils import parseaddr
from types import TracebackType
from typing import NoReturn

import aiosmtplib

from mailflow.addresses import outgoing_address
from mailflow.config import CredentialError, SmtpSettings

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    def __init__(self, message: str, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


class SmtpTransport:
    """One SMTP connection, reused for a batch of mail (``async with``)."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.client: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> SmtpTransport:
        st = self.settings
        client = aiosmtplib.SMTP(
            hostname=st.host,
            port=st.port,
            use_tls=st.security == "ssl",
            start_tls=st.security == "starttls",
            tls_context=st.tls_context() if st.security != "none" else None,
            timeout=st.timeout.total_seconds(),
        )
        try:
            await client.connect()
            if st.auth == "xoauth2":
                token = await asyncio.to_thread(st.token)  # may run a helper command
                await client.auth_xoauth2(st.username or "", token)
            elif st.username:
                await client.login(st.username, st.secret() or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            # The server's words, never the password.
            raise DeliveryError(f"SMTP login as {st.username} refused: {exc.code} "
                                f"{exc.message}", permanent=False) from None
        except CredentialError as exc:
            client.close()
            raise DeliveryError(f"no SMTP credentials: {exc}", permanent=False) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"cannot connect to SMTP {st.host}:{st.port}: {exc}",
                                permanent=False) from None
        self.client = client
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.client is not None and self.client.is_connected:
            try:
                await self.client.quit()
            except (aiosmtplib.SMTPException, OSError):
                self.client.close()
        self.client = None

    async def send(self, mail_from: str, recipient: str, raw: bytes) -> str:
        """Send one message; return the server's answer to DATA (its 250 line).

        Every failure is a :class:`DeliveryError`: one mail that cannot be sent (an
        address the server cannot take) fails alone and never stops the others.
        """
        await self.start(mail_from, recipient, raw)
        return await self.finish(recipient, raw)

    async def start(self, mail_from: str, recipient: str, raw: bytes) -> None:
        """MAIL and RCPT of one message. The server takes nothing before the end of
        DATA (``finish``), so the outbox sends these while the previous mail's "sent"
        mark is still being committed: the mark's latency off the critical path, and
        still at most one delivered-but-unmarked mail per connection."""
        assert self.client is not None, "use `async with SmtpTransport(...)`"
        sender, rcpt, options = await self._envelope(mail_from, recipient, raw)
        with _as_delivery_error(recipient):
            await self._mail_rcpt(sender, rcpt, raw, options)

    async def finish(self, recipient: str, raw: bytes) -> str:
        """DATA after ``start``: the message; the server's 250 line."""
        assert self.client is not None, "use `async with SmtpTransport(...)`"
        with _as_delivery_error(recipient):
            try:
                return (await self.client.data(raw)).message
            except aiosmtplib.SMTPResponseException as exc:
                await self._refused(aiosmtplib.SMTPResponse(exc.code, exc.message))

    async def _mail_rcpt(self, sender: str, rcpt: str, raw: bytes,
                         options: list[str]) -> None:
        """MAIL and RCPT for one recipient through aiosmtplib's public commands.

        What ``SMTP.sendmail`` does, without its per-mail overhead on the sender's one
        event loop (bench/RESULTS.md, end to end): it parses both addresses twice more
        with ``email.utils.parseaddr`` (ours are checked once, :func:`_command_address`;
        aiosmtplib's command-injection check still runs on every line) and rewrites the
        whole message once more just to measure it for SIZE.
        """
        client = self.client
        assert client is not None
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        encoding = "utf-8" if options else "ascii"
        opts = [o.encode("ascii") for o in options]
        if client.supports_extension("size"):
            opts.insert(0, b"SIZE=%d" % _wire_size(raw))  # RFC 1870
        answer = await client.execute_command(
            b"MAIL", b"FROM:<" + sender.encode(encoding) + b">", *opts)
        if answer.code == 250:
            answer = await client.execute_command(b"RCPT", b"TO:<" + rcpt.encode(encoding) + b">")
        if answer.code not in (250, 251):
            await self._refused(answer)

    async def _refused(self, answer: aiosmtplib.SMTPResponse) -> NoReturn:
        """Reset the envelope for the next mail (as ``sendmail`` does), then raise."""
        client = self.client
        if client is not None and client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.rset()
        raise DeliveryError(f"{answer.code} {answer.message}", permanent=answer.code >= 500)

    async def _envelope(self, mail_from: str, recipient: str,
                        raw: bytes) -> tuple[str, str, list[str]]:
        """Sender, recipient (domains as A-labels) and MAIL options (SMTPUTF8 when a
        non-ASCII local part or RFC 6532 header needs it, RFC 6531)."""
        assert self.client is not None
        sender, utf8_sender = _command_address(mail_from)
        rcpt, utf8_rcpt = _command_address(recipient)
        if sender is None or rcpt is None:
            bad = mail_from if sender is None else recipient
            raise DeliveryError(f"address {bad!r} cannot be used in an SMTP command",
                                permanent=True)
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        if not (utf8_sender or utf8_rcpt or not head.isascii()):
            return sender, rcpt, []
        try:
            if self.client.is_ehlo_or_helo_needed:
                await self.client.ehlo()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP connection failed: {exc}", permanent=False) from None
        if not self.client.supports_extension("smtputf8"):
            raise DeliveryError(
                f"{recipient} has a non-ASCII address (RFC 6531) and the SMTP server "
                f"{self.settings.host} does not offer SMTPUTF8: cannot be delivered",
                permanent=True)
        return sender, rcpt, ["SMTPUTF8"]


@contextlib.contextmanager
def _as_delivery_error(recipient: str) -> Iterator[None]:
    """Whatever aiosmtplib raises, as the two kinds of failure the outbox acts on."""
    try:
        yield
    except (ValueError, UnicodeError) as exc:
        # aiosmtplib refuses what it cannot write on a command line; a mail it
        # cannot send now it will never send.
        raise DeliveryError(f"cannot send to {recipient!r}: {exc}", permanent=True) from None
    except aiosmtplib.SMTPNotSupported as exc:
        raise DeliveryError(f"{exc}", permanent=True) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise DeliveryError(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP connection failed: {exc}", permanent=False) from None


def _wire_size(raw: bytes) -> int:
    """Octets of the message with every line ending CRLF, as DATA sends it (RFC 1870),
    counted without copying the message."""
    crlf = raw.count(b"\r\n")
    return (len(raw) + (raw.count(b"\n") - crlf) + (raw.count(b"\r") - crlf)
            + (0 if raw.endswith((b"\n", b"\r")) else 2))


@functools.lru_cache(maxsize=256)
def _command_address(addr: str) -> tuple[str | None, bool]:
    """The address as ``MAIL FROM``/``RCPT TO`` write it (None: it cannot be), and
    whether it needs SMTPUTF8. Cached: the desk's own address is on every mail, and
    parsing it each time cost more than the rest of the envelope."""
    out, utf8 = outgoing_address(addr)
    return (out if command_line_safe(out) else None), utf8


def command_line_safe(addr: str) -> bool:
    """Goes on a ``MAIL FROM``/``RCPT TO`` line as exactly this one address: no line
    breaks or brackets, and read back the same (aiosmtplib re-parses addresses)."""
    if not addr or any(c in addr for c in "\r\n\x00<>") or addr != addr.strip():
        return False
    return parseaddr(addr)[1] == addr
