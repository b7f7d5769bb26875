"""An SNMP OCTET STRING as text, by one stated rule, and text bounded without hiding it.

DisplayString is ASCII by the MIB, but devices in Norway put Latin-1 (``r\\xe5dhus``)
or UTF-8 (``rådhus``) in sysLocation and ifAlias, and binary (MAC addresses, bitmaps)
in other octet strings. The rule: trailing NULs dropped; valid UTF-8 with nothing but
printable characters (no control, format or unassigned ones; tab, CR, LF allowed) is
that text; else, if every byte is a printable Latin-1 character, Latin-1; else it is
binary, shown as ``0x`` and lowercase hex (as snmp_exporter does). Nothing becomes
U+FFFD.
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["MAX_TEXT", "bounded", "octets_text"]

MAX_TEXT: Final = 1024  # what the engine takes in a label value or a varbind
_ALLOWED: Final = frozenset("\t\r\n")
_NOT_TEXT: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def _printable(text: str) -> bool:
    """No control, format, surrogate, private-use or unassigned character (tab, CR and
    LF allowed)."""
    return all(ch in _ALLOWED or unicodedata.category(ch) not in _NOT_TEXT for ch in text)


def octets_text(raw: bytes) -> str:
    raw = raw.rstrip(b"\x00")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _printable(text):
        return text
    latin = raw.decode("latin-1")
    if _printable(latin):
        return latin
    return "0x" + raw.hex()


def bounded(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` within ``limit`` characters; a cut one ends in "…" so the cut shows."""
    return text if len(text) <= limit else text[:limit - 1] + "…"
