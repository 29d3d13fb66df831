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


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n} B"
