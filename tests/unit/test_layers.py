"""The layering of docs/DESIGN.md is a checked contract (import-linter, setup.cfg), and it
really catches a forbidden import: each test breaks a copy of the package and runs
`lint-imports` on it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so that grimp analyses the copy and not the installed package.
    return subprocess.run([str(LINT), "--config", str(tree / "setup.cfg"), "--no-cache"],
                          cwd=tree, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "opskit", tmp_path / "opskit",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    return tmp_path


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    out = lint(tree)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "7 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    # (inventory -> transport would break the settings contract too: settings import the
    # inventory; one plant per contract, each breaking only its own.)
    ("inventory/loader.py", "from opskit import settings", "inventory imports nothing"),
    ("settings/base.py", "from opskit.pg import config", "settings import nothing"),
    ("transport/session.py", "from opskit.runner import fleet", "transport imports nothing"),
    ("runner/fleet.py", "from opskit.pg import state", "the runner imports nothing"),
    ("pg/state.py", "from opskit.commands import render", "the domains never import"),
    ("journal.py", "from opskit.runner import fleet", "the top-level utilities import"),
    ("onhost/page_map.py", "import yaml", "onhost programs import only"),
])
def test_a_forbidden_import_breaks_its_contract(tree: Path, module: str, line: str,
                                                contract: str) -> None:
    path = tree / "opskit" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    out = lint(tree)
    assert out.returncode != 0
    broken = [s for s in out.stdout.splitlines() if s.endswith("BROKEN")]
    assert len(broken) == 1 and broken[0].startswith(contract), out.stdout


def test_onhost_programs_import_only_the_standard_library() -> None:
    """Targets have python3 and nothing else: a closer check than the contract's list."""
    for path in sorted((ROOT / "opskit" / "onhost").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", (path.name, name)


def test_only_the_utilities_sit_at_the_top() -> None:
    top = sorted(p.name for p in (ROOT / "opskit").glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "aws.py", "cli.py", "errors.py", "journal.py",
                   "lock.py", "output.py", "redact.py", "secretfile.py", "units.py"]
