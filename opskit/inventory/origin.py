"""Where a var was declared: the file, the line and the group or host it was set on.

A host's merged vars forget where each value came from; settings errors must not (a misspelt
key at 3 a.m. is found by its file and line). The loader records an :class:`Origin` for every
var of every declaration and merges them with the same precedence as the values, so
``host.origins["postgres"]`` is the declaration whose ``postgres:`` the host got.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, eq=False)
class Origin:
    """One var as declared: ``source`` (a file), ``owner`` ("group 'db'", "host 'pg01a'"),
    ``line`` of its key when known, and ``raw``: the value as parsed, which for YAML keeps the
    line of every nested key (see :meth:`line_of`)."""

    source: str
    owner: str
    line: int | None = None
    raw: Any = None

    def line_of(self, path: Sequence[Any] = ()) -> int | None:
        """The line of the nested key at ``path`` (e.g. ``("disk_percent", "warn")``), else of
        the deepest mapping on the way that knows its lines, else of the var itself."""
        best = self.line
        node = self.raw
        for key in path:
            lines = getattr(node, "key_lines", None)
            if isinstance(lines, Mapping) and key in lines:
                best = lines[key]
            elif getattr(node, "line", None):
                best = node.line
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
                node = node[key]
            else:
                break
        return best

    def where(self, path: Sequence[Any] = ()) -> str:
        """``inventory/x.yml line 12, group 'db'``: the start of a one-line error."""
        line = self.line_of(path)
        at = f"{self.source} line {line}" if line else self.source
        return f"{at}, {self.owner}"
