"""Mail addresses in and out: who wrote to us, and how to write back without harm.

Incoming, an address header decides who becomes the requester and receives our mail,
so a parser that can be talked into another address is a misdirection attack (issue
10, item 2): ``From: "x\\r\\n <victim@evil.test>"@mallory.test`` is one sender at
mallory.test, never the victim. Headers are unfolded first (RFC 5322 section 2.2.3) and
anything the plain fast path does not match goes to a strict parser.

Outgoing, domains go out as IDNA A-labels (RFC 5890), so an internationalised domain
needs neither SMTPUTF8 nor an encoded word in ``To:``; only a non-ASCII local part
needs SMTPUTF8 (RFC 6531/6532), which :mod:`mailflow.smtp` asks for or refuses.
"""

from __future__ import annotations

import re
from email import _header_value_parser as hvp  # policy.default's own header parser
from email.errors import HeaderParseError
from email.utils import getaddresses
from functools import lru_cache
from inspect import signature

from email_validator import EmailNotValidError, validate_email

# CPython's CVE-2023-27043 fix added ``strict`` to getaddresses in later patch releases
# (3.11.10, 3.12.6, 3.13); 3.11.7, which we also support, lacks it.
_HAS_STRICT = "strict" in signature(getaddresses).parameters

# A fold (CRLF + white space) is removed by unfolding; any other CR or LF left in a
# header value is not part of it and becomes a space.
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CRLF = re.compile(r"\r\n|[\r\n]")

# One plain address, optionally with a simple display name: by far the commonest form.
# The strict parsers cost ~40 us a header; this regex handles the plain case exactly and
# leaves everything else to them.
_SIMPLE_ADDR = re.compile(
    r'^\s*(?:"([^"\\]*)"\s*|([^"<>,;:@()\[\]\\]*?)\s*)?<([^<>@\s",;:()]+@[^<>@\s",;:()]+)>\s*$'
    r'|^\s*([^<>@\s",;:()]+@[^<>@\s",;:()]+)\s*$'
)

# A conservative subset of valid addresses (ASCII dot-atom, LDH labels, alphabetic TLD
# that is not special-use): these need no full check. email-validator takes ~200 us
# per new address and decides everything else.
_PLAIN_ADDR = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"(?!(?:invalid|local|localhost|onion|arpa)$)[a-z]{2,63}$"
)


def unfold(value: str) -> str:
    """RFC 5322 unfolding; stray CR/LF become spaces (they are never data)."""
    if "\r" not in value and "\n" not in value:
        return value
    return _CRLF.sub(" ", _FOLD.sub("", value))


def normalize_address(addr: str) -> str:
    return addr.strip().strip("<>").lower().replace("\x00", "")


def parse_addresses(values: list[str]) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs from raw header values, names still encoded.

    Unfolded, then parsed strictly: a value the parser is not sure of yields nothing
    rather than a guess, because a wrong guess sends our mail to somebody else.
    """
    values = [unfold(v) for v in values]
    if len(values) == 1:
        m = _SIMPLE_ADDR.match(values[0])
        if m:
            quoted, bare, addr, plain = m.groups()
            name = (quoted if quoted is not None else bare or "").strip()
            return [(name, addr or plain)]
    out: list[tuple[str, str]] = []
    for value in values:
        out.extend(_strict(value))
    return out


def _strict(value: str) -> list[tuple[str, str]]:
    if _HAS_STRICT:
        try:
            pairs = getaddresses([value], strict=True)  # type: ignore[call-arg]
        except Exception:  # noqa: BLE001 - a broken header is data, not a crash
            return []
        return [(n, a) for n, a in pairs if a and "@" in a]
    return _policy_default(value)


def _policy_default(value: str) -> list[tuple[str, str]]:
    """What ``policy.default`` makes of an address list (Python without strict=True)."""
    try:
        tree, rest = hvp.get_address_list(value)
    except (HeaderParseError, IndexError, ValueError, AttributeError, TypeError):
        return []
    if rest:
        return []  # text the parser could not place: do not guess who is meant
    out = []
    for mailbox in tree.all_mailboxes:
        # "invalid-mailbox" is the parser's guess at text it could not read as an
        # address (``x@y.test <z@w.test>``): never ours to write to.
        if mailbox.token_type != "mailbox":
            continue
        try:
            addr, name = mailbox.addr_spec, mailbox.display_name or ""
        except (AttributeError, IndexError, TypeError):
            continue
        if addr and "@" in addr:
            out.append((name, addr))
    return out


def valid_address(addr: str) -> bool:
    """Syntax only, no DNS: may we write to it at all?"""
    if len(addr) <= 254 and len(addr.partition("@")[0]) <= 64 and _PLAIN_ADDR.match(addr):
        return True
    return _valid_address_full(addr)


@lru_cache(maxsize=65536)
def _valid_address_full(addr: str) -> bool:
    """``test_environment`` admits the ``.test`` names that test setups use; other
    special-use names (``.invalid``, ``.localhost``) stay out. Quoted local parts are
    refused (email-validator's default): nobody we answer needs one, attackers do."""
    try:
        validate_email(addr, check_deliverability=False, test_environment=True)
    except EmailNotValidError:
        return False
    return True


# -- outgoing ---------------------------------------------------------------------------

def idna_domain(domain: str) -> str | None:
    """The domain in A-labels (``xn--...``); None when it cannot be one."""
    if domain.isascii():
        return domain.lower()
    try:
        import idna

        return idna.encode(domain, uts46=True).decode("ascii")
    except (ImportError, UnicodeError, ValueError):
        pass
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def outgoing_address(addr: str) -> tuple[str, bool]:
    """The address as it goes on the wire, and whether it needs SMTPUTF8.

    The domain becomes A-labels; a non-ASCII local part (or a domain that has no
    A-label form) stays UTF-8 and needs SMTPUTF8 end to end.
    """
    local, at, domain = addr.rpartition("@")
    if not at:
        return addr, not addr.isascii()
    ascii_domain = idna_domain(domain)
    out = f"{local}@{ascii_domain or domain}"
    return out, not out.isascii()
