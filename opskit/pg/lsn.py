"""WAL positions: PostgreSQL prints them as ``X/Y`` (two hex halves of a 64-bit number)."""

from __future__ import annotations


def parse(text: str | None) -> int | None:
    if not text:
        return None
    hi, sep, lo = text.strip().partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(hi, 16) << 32) | int(lo, 16)


def fmt(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
