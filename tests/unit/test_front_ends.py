"""One shape for every mutating command, and the Fabric front end made from the Click tree:
the same commands, the same options, the same refusal and cancel code in both."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from opskit.cli import cli
from opskit.commands import fabtasks
from opskit.errors import EXIT_CANCELLED

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MUTATING = {
    "exec", "deploy", "rollback", "snapshot create", "snapshot prune", "snapshot restore",
    "pg failover", "pg switchover", "pg rejoin", "redis promote", "redis switchover",
    "redis rejoin", "redis backup", "cache warm", "cache evict", "lab up", "lab down",
    "lab pg-reset", "lab redis-reset", "lab cache-data",
}


def click_paths(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()
                ) -> dict[str, click.Command]:
    """Every runnable command of the Click tree, by its Fabric task name."""
    out: dict[str, click.Command] = {}
    for name in group.list_commands(ctx):
        if not path and name in fabtasks.SKIP:
            continue
        sub = group.get_command(ctx, name)
        assert sub is not None
        sub_ctx = click.Context(sub, info_name=name, parent=ctx)
        if isinstance(sub, click.Group):
            if sub.invoke_without_command:
                out[".".join([*path, name, fabtasks.GROUP_TASK])] = sub
            out.update(click_paths(sub, sub_ctx, (*path, name)))
        else:
            out[".".join([*path, name])] = sub
    return out


def fab_tasks() -> dict[str, list[str]]:
    """`fab --list --list-format json`, flattened: task name -> its option names."""
    proc = subprocess.run([str(BIN / "fab"), "--list", "--list-format", "json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    found: dict[str, list[str]] = {}

    def walk(coll: dict, prefix: str) -> None:  # type: ignore[type-arg]
        for task in coll["tasks"]:
            found[prefix + task["name"]] = task
        for sub in coll["collections"]:
            walk(sub, prefix + sub["name"] + ".")

    walk(json.loads(proc.stdout), "")
    return found  # type: ignore[return-value]


def test_fab_list_has_a_task_for_every_click_command_and_nothing_else() -> None:
    ctx = click.Context(cli, info_name="opskit")
    assert set(fab_tasks()) == set(click_paths(cli, ctx))


def test_every_mutating_command_is_declared_with_the_shape() -> None:
    found = fabtasks.mutating_commands()
    assert set(found) == MUTATING
    assert {f.opskit_mutating for f in found.values()} == MUTATING  # journaled under its path
    ctx = click.Context(cli, info_name="opskit")
    for path, cmd in click_paths(cli, ctx).items():
        names = {p.name for p in cmd.params}
        if path.replace(".", " ") in MUTATING:
            assert {"yes", "dry_run"} <= names, path
        else:
            assert "yes" not in names and "dry_run" not in names, path


def test_each_task_takes_exactly_the_commands_options() -> None:
    ctx = click.Context(cli, info_name="opskit")
    tasks = {name: fabtasks.make_task(name.split(".")[:-1] if name.endswith(
        "." + fabtasks.GROUP_TASK) else name.split("."), cmd, click.Context(cmd, parent=ctx))
        for name, cmd in click_paths(cli, ctx).items()}
    for name, cmd in click_paths(cli, ctx).items():
        sub_ctx = click.Context(cmd, parent=ctx)
        want = {fabtasks._flag(p) for p in cmd.get_params(sub_ctx) if p.name != "help"}
        assert set(tasks[name].argspec(tasks[name].body).parameters) == want, name


def test_task_values_become_the_same_command_line() -> None:
    ctx = click.Context(cli, info_name="opskit")
    snap = cli.get_command(ctx, "snapshot")
    assert isinstance(snap, click.Group)
    sctx = click.Context(snap, info_name="snapshot", parent=ctx)
    create = snap.get_command(sctx, "create")
    assert create is not None
    argv = fabtasks.argv_for(["snapshot", "create"], create, click.Context(create, parent=sctx),
                             {"mount": "/data", "tag": ["a=1", "b=2"], "yes": True,
                              "dry_run": False, "limit": "db2", "freeze_timeout": None})
    assert argv[:2] == ["snapshot", "create"] and "--" not in argv
    # Order follows the Click declaration; what matters is that Click parses it back.
    parsed = create.make_context("create", argv[2:], parent=sctx)
    assert parsed.params["mount"] == "/data" and parsed.params["tags"] == ("a=1", "b=2")
    assert parsed.params["yes"] is True and parsed.params["dry_run"] is False
    # An argument that looks like an option stays an argument (it goes after "--").
    exec_ = cli.get_command(ctx, "exec")
    assert exec_ is not None
    argv = fabtasks.argv_for(["exec"], exec_, click.Context(exec_, parent=ctx),
                             {"command": ["--version"], "yes": True})
    assert argv == ["exec", "--yes", "--", "--version"]


@pytest.fixture
def local_inventory(tmp_path: Path) -> Path:
    """Hosts that are never contacted: every case below stops before connecting."""
    inv = tmp_path / "inv.yml"
    inv.write_text("""
all:
  hosts:
    h1: {ansible_host: 127.0.0.1, ansible_port: 1}
  children:
    db:
      hosts:
        db1: {ansible_host: 127.0.0.1, ansible_port: 1, postgres: {data_directory: /pg}}
""")
    return inv


def run_tool(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPSKIT_JOURNAL": str(tmp_path / "journal.jsonl")}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=env)


@pytest.mark.parametrize("front", ["opskit", "fab"])
def test_without_a_tty_and_without_yes_both_front_ends_refuse(front: str, tmp_path: Path,
                                                              local_inventory: Path) -> None:
    argv = ([str(BIN / "opskit"), "-i", str(local_inventory), "exec", "-l", "h1", "--", "true"]
            if front == "opskit" else
            [str(BIN / "fab"), "exec", "--inventory", str(local_inventory), "--limit", "h1",
             "--command", "true"])
    proc = run_tool(argv, tmp_path)
    assert proc.returncode == 1
    assert "refusing to run without confirmation (no TTY)" in proc.stderr
    assert "hint: add --yes" in proc.stderr
    assert not (tmp_path / "journal.jsonl").exists()  # nothing ran, nothing to journal


def answer_no(argv: list[str], tmp_path: Path) -> tuple[int, str]:
    """Run on a real pseudo-terminal, answer "n" at the prompt: exit code and what it said."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/stderr are the terminal
        os.environ["OPSKIT_JOURNAL"] = str(tmp_path / "journal.jsonl")
        os.chdir(ROOT)
        os.execv(argv[0], argv)
    out = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"[y/N]" in out:
                os.write(fd, b"n\n")
                answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert answered, out.decode(errors="replace")
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


@pytest.mark.parametrize("args", [
    ["exec", "-l", "h1", "--", "true"],
    ["cache", "evict", "h1", "--path", "/data"],
    ["pg", "failover", "-l", "db"],
    ["lab", "down", "--state-dir", "{tmp}/lab"],
])
def test_no_at_the_prompt_is_the_same_cancel_code_everywhere(args: list[str], tmp_path: Path,
                                                             local_inventory: Path) -> None:
    argv = [str(BIN / "opskit"), "-i", str(local_inventory),
            *[a.replace("{tmp}", str(tmp_path)) for a in args]]
    code, said = answer_no(argv, tmp_path)
    assert code == EXIT_CANCELLED == 1, said
    assert "cancelled; nothing was changed" in said
    assert not (tmp_path / "journal.jsonl").exists()


def test_no_at_the_fab_prompt_is_the_same_cancel_code(tmp_path: Path,
                                                      local_inventory: Path) -> None:
    code, said = answer_no([str(BIN / "fab"), "cache.evict", "--inventory",
                            str(local_inventory), "--path", "/data", "h1"], tmp_path)
    assert code == EXIT_CANCELLED, said
    assert "cancelled; nothing was changed" in said


def test_a_dry_run_is_journaled_with_the_run_id_and_front_end(tmp_path: Path,
                                                              local_inventory: Path) -> None:
    for front in ("opskit", "fab"):
        argv = ([str(BIN / "opskit"), "-i", str(local_inventory), "cache", "evict", "h1",
                 "--path", "/data", "--dry-run", "--json"] if front == "opskit" else
                [str(BIN / "fab"), "cache.evict", "--inventory", str(local_inventory),
                 "--path", "/data", "--dry-run", "--json", "h1"])
        proc = run_tool(argv, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"dry_run": True, "host": "h1", "path": "/data"}
    first, second = (json.loads(line) for line in
                     (tmp_path / "journal.jsonl").read_text().splitlines())
    assert first["command"] == second["command"] == "cache evict"
    assert first["dry_run"] and second["dry_run"]
    assert (first["via"], second["via"]) == ("opskit", "fab")
    assert first["run_id"] != second["run_id"] and len(first["run_id"]) > 16
    assert first["outcomes"] == second["outcomes"] == {
        "h1": {"status": "planned", "exit_status": None, "error": None}}
