"""INFO parsing: ``key:value`` lines, ``# Section`` headers, replica lines as dicts."""

from __future__ import annotations


def parse(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out[key] = value
    return out


def replicas(info: dict[str, str]) -> list[dict[str, str]]:
    """``slaveN:ip=...,port=...,state=online,offset=...,lag=...`` entries of a master."""
    out = []
    for key, value in info.items():
        if key.startswith("slave") and key[5:].isdigit():
            out.append(dict(kv.split("=", 1) for kv in value.split(",") if "=" in kv))
    return out


def as_int(info: dict[str, str], key: str) -> int | None:
    v = info.get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None
