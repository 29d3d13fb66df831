"""The ``cache:`` settings: which programs the cache helpers use on a host."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from opskit.settings.base import Field, Settings

# A program on PATH (python3, python3.11) or an absolute path to one: nothing a shell or a
# command line would split or read as an option.
_PROGRAM = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.+-]*|(?:/[A-Za-z0-9_.+-]+)+)\Z")


def _program(value: str) -> str:
    if not _PROGRAM.match(value):
        raise ValueError(f"must be a program name or an absolute path to one (letters, digits, "
                         f"_ . + -), got {value!r}")
    return value


Program = Annotated[str, AfterValidator(_program)]


class CacheSettings(Settings):
    """Page-cache maps, warming and eviction (`opskit cache`) on this host."""

    python: Program = Field("python3", description="The host's Python 3 that runs the page map "
                            "and warming helpers (a name on PATH or an absolute path).")
    vmtouch: Program = Field("vmtouch", description="The host's vmtouch, used by `cache evict` "
                             "and the map's cross-check (a name on PATH or an absolute path).")
