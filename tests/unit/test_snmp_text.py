"""OCTET STRINGs as text by the stated rule (collectors/snmp/text.py): UTF-8, else
Latin-1, else hex; never U+FFFD; a cut string shows its cut."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.snmp.text import MAX_TEXT, bounded, octets_text


@pytest.mark.parametrize(("raw", "text"), [
    (b"Alta r\xc3\xa5dhus", "Alta rådhus"),            # UTF-8
    (b"Alta r\xe5dhus", "Alta rådhus"),                 # Latin-1, as older gear sends it
    (b"Gi1/0/1\x00\x00", "Gi1/0/1"),                    # NUL padding
    (b"\x00\x1a\x2b\x3c\x4d\x5e", "0x001a2b3c4d5e"),    # a MAC address
    (b"\xff\xfe\x00\x01", "0xfffe0001"),                # binary
    (b"line one\r\nline two\tend", "line one\r\nline two\tend"),
    (b"", ""),
    (b"\x80\x81", "0x8081"),                            # C1 controls: not text in Latin-1
])
def test_the_rule(raw: bytes, text: str) -> None:
    assert octets_text(raw) == text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Cf"))))
def test_printable_utf8_comes_back_as_it_was(text: str) -> None:
    assert octets_text(text.encode("utf-8")) == text.rstrip("\x00")


@given(st.binary(max_size=64))
def test_any_bytes_give_text_without_replacement_characters(raw: bytes) -> None:
    text = octets_text(raw)
    assert "\ufffd" not in text or "\ufffd".encode() in raw
    if text.startswith("0x") and not raw.startswith(b"0x"):
        assert bytes.fromhex(text[2:]) == raw.rstrip(b"\x00")


def test_a_cut_shows() -> None:
    assert bounded("a" * MAX_TEXT) == "a" * MAX_TEXT
    cut = bounded("a" * (MAX_TEXT + 1))
    assert (len(cut), cut[-1]) == (MAX_TEXT, "…")
