"""Small stdlib-only programs run on target hosts (``python3 -c SCRIPT ARGS``)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def script(name: str) -> str:
    """The source of ``opskit/onhost/<name>.py``, to pass as ``python3 -c`` (quoted)."""
    return files(__name__).joinpath(f"{name}.py").read_text()
