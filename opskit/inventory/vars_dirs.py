"""group_vars/ and host_vars/ beside the inventory, as Ansible's host_group_vars plugin reads them.

For the group or host NAME, the first of ``NAME``, ``NAME.yml``, ``NAME.yaml``, ``NAME.json``
that exists is read; a directory there is read whole: its files with one of those extensions
(or none), in sorted order, subdirectories too, skipping names that start with ``.`` or end
with ``~``; later files replace earlier vars. Files for a group or host the inventory does
not have are not read (as in Ansible). Where Ansible would silently read only the first of two
forms (``web`` and ``web.yml``), opskit refuses: one of them would be ignored.

The directories are looked for beside the inventory file, or inside the directory given
with ``-i``. Precedence (loader._build): they beat the inventory file's vars of the same kind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Container
from pathlib import Path
from typing import Any

from opskit.errors import InventoryError
from opskit.inventory import refuse
from opskit.inventory.collect import Collector, check_vars, kind, origins_of
from opskit.inventory.origin import Origin
from opskit.inventory.yaml_source import parse_yaml, read_text

EXTENSIONS = ("", ".yml", ".yaml", ".json")  # Ansible's order of preference
SUBDIRS = ("group_vars", "host_vars")


def add(collector: Collector, basedir: Path) -> list[str]:
    """Read the group_vars/ and host_vars/ files of ``basedir`` for the collected groups and
    hosts into ``collector``; returns the files read."""
    read: list[str] = []
    groups = {*collector.groups, "all", "ungrouped"}
    for subdir, names, store, what in (
        ("group_vars", groups, collector.group_files, "group"),
        ("host_vars", collector.host_vars, collector.host_files, "host"),
    ):
        path = basedir / subdir
        if not os.path.lexists(path):
            continue
        if not path.is_dir():
            raise InventoryError(f"{path}: {subdir} is not a directory",
                                 hint=f"make {subdir}/ a directory of NAME.yml files, or "
                                 "rename it")
        for name, entry in _entries(path, names):
            owner = f"{what} '{name}'"
            files = _files(entry) if entry.is_dir() else [entry]
            merged: dict[str, Any] = {}
            origins: dict[str, Origin] = {}
            for file in files:
                data = _load(file)
                if not data:
                    continue  # an empty file adds nothing, as in Ansible
                at = f"{file} line {getattr(data, 'line', None) or 1}"
                if not isinstance(data, dict):
                    raise InventoryError(f"{at}: a {subdir} file must be a mapping of vars "
                                         f"(got {kind(data)})",
                                         hint="write `name: value` pairs at the top level")
                merged.update(check_vars(data, at, owner, source=str(file)))
                origins.update(origins_of(data, str(file), owner))
                read.append(str(file))
            if merged:
                store[name] = (merged, origins)
    return read


def _entries(path: Path, names: Container[str]) -> list[tuple[str, Path]]:
    """(entity name, its file or directory) for each name the inventory has.

    One listing of the directory, not four stat calls per host: a fleet of 100,000 hosts
    with three host_vars files costs three lookups.
    """
    found: dict[str, list[tuple[int, str]]] = {}
    for entry in os.listdir(path):
        stem, ext = os.path.splitext(entry)
        candidates = [(entry, 0)]
        if ext in EXTENSIONS[1:] and stem:
            candidates.append((stem, EXTENSIONS.index(ext)))
        for name, order in candidates:
            if name in names and not name.startswith(os.sep):
                found.setdefault(name, []).append((order, entry))
    out = []
    for name, forms in found.items():
        forms.sort()
        if len(forms) > 1:
            first, second = forms[0][1], forms[1][1]
            raise InventoryError(
                f"{path / second}: both {first} and {second} hold vars for '{name}'; Ansible "
                f"reads only {first}",
                hint="merge them into one (or a directory of files)")
        out.append((name, path / forms[0][1]))
    return sorted(out)


def _files(directory: Path) -> list[Path]:
    out: list[Path] = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or name.endswith("~"):
            continue
        full = directory / name
        ext = os.path.splitext(name)[1]
        if full.is_dir() and not ext:
            out.extend(_files(full))
        elif full.is_file() and ext in EXTENSIONS:
            out.append(full)
    return out


def _load(file: Path) -> Any:
    text = read_text(file)
    refuse.refuse_vaulted_file(str(file), text)
    if file.suffix == ".json":
        try:
            return parse_yaml(text, str(file))  # keeps key lines
        except InventoryError:
            try:  # JSON that PyYAML's YAML 1.1 does not take (tabs, some escapes)
                return json.loads(text)
            except ValueError as exc:
                raise InventoryError(f"{file}: invalid JSON ({exc})", hint="fix the JSON") \
                    from None
    return parse_yaml(text, str(file))
