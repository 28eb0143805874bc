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
from collections.abc import Iterator
from email.utils import getaddresses
from functools import lru_cache
from inspect import signature

from email_validator import EmailNotValidError, validate_email

# CPython's CVE-2023-27043 fix added ``strict`` to getaddresses in later patch releases
# (3.11.10, 3.12.6, 3.13); 3.11.7, which we also support, lacks it.
_HAS_STRICT = "strict" in signature(getaddresses).parameters
MAX_HEADER = 16384

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
    values = [_bounded(unfold(v)) for v in values]
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


def _bounded(value: str) -> str:
    """At most MAX_HEADER characters, cut after a whole list entry.

    A cap keeps one hostile header from holding up ingest; 16 KB is several hundred
    addresses.
    A cut inside a quoted string leaves it unterminated, which parses to no address.
    """
    if len(value) <= MAX_HEADER:
        return value
    cut = value.rfind(",", 0, MAX_HEADER)
    return value[:cut] if cut > 0 else ""


def _strict(value: str) -> list[tuple[str, str]]:
    try:
        pairs = getaddresses([value], strict=True) if _HAS_STRICT \
            else _getaddresses_strict(value)
    except Exception:  # noqa: BLE001 - a broken header is data, not a crash
        return []
    bare = _strip_quoted(value).lower()
    low = value.lower()
    # The address must be written as such in the header: getaddresses "repairs"
    # ``From: "victim@evil.test"`` (a quoted string, no domain) into the victim's address.
    return [(n, a) for n, a in pairs if a and "@" in a and
            (a.lower() in bare or (a.startswith('"') and a.lower() in low))]


def _getaddresses_strict(value: str) -> list[tuple[str, str]]:
    """``getaddresses([value], strict=True)`` for Pythons that lack it.

    The checks of CPython's fix for CVE-2023-27043 (gh-102988), on top of the same
    linear-time parser: parentheses must balance, a "[" left in an address means the
    parser lost its way, and the parser must find exactly one address per top-level
    comma; otherwise the value yields nothing. (``policy.default``'s parser would do
    too, but takes quadratic time on some hostile headers.)
    """
    if not _balanced_parentheses(value):
        return []
    pairs = getaddresses([value])
    if any("[" in a for _, a in pairs):
        return []
    if len(pairs) != 1 + _strip_quoted(value).count(","):
        return []
    return pairs


def _escaped_chars(text: str) -> Iterator[tuple[int, str]]:
    escape = False
    pos = 0
    for pos, ch in enumerate(text):
        if escape:
            yield pos, "\\" + ch
            escape = False
        elif ch == "\\":
            escape = True
        else:
            yield pos, ch
    if escape:
        yield pos, "\\"


def _strip_quoted(text: str) -> str:
    """``text`` without its quoted strings (commas there separate nothing)."""
    if '"' not in text:
        return text
    start, open_pos, out = 0, None, []
    for pos, ch in _escaped_chars(text):
        if ch == '"':
            if open_pos is None:
                open_pos = pos
            else:
                if start != open_pos:
                    out.append(text[start:open_pos])
                start, open_pos = pos + 1, None
    if start < len(text):
        out.append(text[start:])
    return "".join(out)


def _balanced_parentheses(text: str) -> bool:
    opens = 0
    for _, ch in _escaped_chars(_strip_quoted(text)):
        if ch == "(":
            opens += 1
        elif ch == ")":
            opens -= 1
            if opens < 0:
                return False
    return opens == 0


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
