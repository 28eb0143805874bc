"""Header and body text from the bytes real mail carries: never raises, loses little.

Real mail mislabels charsets, sends raw 8-bit headers and breaks encoded words; each
helper here turns such input into clean text. NUL characters are dropped from every
decoded value: no text column stores them (PostgreSQL refuses them outright, issue 10
item 5) and no reader needs them; the raw bytes keep the original.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header

# Charset labels seen in real mail that Python's codecs do not know, or know as a
# smaller set than what senders actually use under that label.
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "x-unknown": "utf-8",
    "unknown-8bit": "utf-8",
    "x-user-defined": "utf-8",
    "default": "utf-8",
    "us-ascii": "ascii",
    "iso-8859-1": "cp1252",  # senders say latin-1 and send Windows quotes
    "latin1": "cp1252",
    "latin-1": "cp1252",
}
_ASCII_LIKE = {"ascii", "cp1252", "iso-8859-15"}
_WS = re.compile(r"\s+")
_SURROGATE = re.compile("[\udc80-\udcff]")

def _unsurrogate(value: str) -> str:
    """Raw 8-bit header bytes come through compat32 as surrogates: decode them."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    data = value.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def decode_text(value: object) -> str:
    """A header value as clean one-line text: RFC 2047 decoded, no CR/LF left."""
    if value is None:
        return ""
    text = _unsurrogate(str(value))
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except (HeaderParseError, LookupError, UnicodeError, ValueError, AssertionError):
            text = _decode_words_leniently(text)
    # Folding and any stray CR/LF collapse to single spaces: header values never carry
    # line breaks onward (that is how header injection starts). NUL goes too.
    if "\x00" in text:
        text = text.replace("\x00", "")
    return _WS.sub(" ", text).strip()


def _decode_words_leniently(text: str) -> str:
    out = []
    try:
        parts = decode_header(text)
    except (HeaderParseError, ValueError, AssertionError):
        return text
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_bytes(chunk, charset))
    return "".join(out)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in a declared charset that may be wrong: never raises, loses little."""
    label = (charset or "").strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label) or "ascii"
    if label in _ASCII_LIKE and not data.isascii():
        # Mislabelled UTF-8 is the commonest charset lie; valid multi-byte UTF-8 is
        # almost never produced by accident in Latin text.
        try:
            text = data.decode("utf-8")
            return text.replace("\x00", "") if "\x00" in text else text
        except UnicodeDecodeError:
            pass
    try:
        text = data.decode(label)
    except (LookupError, UnicodeDecodeError):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", "replace")
    return text.replace("\x00", "") if "\x00" in text else text


