"""The Fabric front end: one Fabric task per Click command, made from the Click tree itself.

Each task takes the command's own options and arguments (as ``--long-name`` flags; arguments
may also be given positionally) plus the shared fleet options, turns them back into an opskit
command line and runs it through ``cli.run`` in this process: the same parsing and checks,
journal records (``via: "fab"``), output and exit codes -- nothing to keep in sync by hand.

    fab pg.switchover --inventory inventory/lab.yml --limit db --to db2 --yes
    fab -H root@10.0.0.5 exec --command uptime       # -H: one host, as Fabric users expect
"""

from __future__ import annotations

import inspect
import keyword
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
import yaml
from invoke import Collection, Context, Task
from invoke.exceptions import Exit

# Commands that make no sense as a Fabric task (shell completion of the opskit CLI itself).
SKIP = frozenset({"completion"})
# The task of a group that also runs on its own (``opskit health``): ``fab health`` / ``.run``.
# (Not "check": ``opskit inventory check`` is a subcommand, and a task of the same name would
# replace the group's own, so ``fab inventory`` would run the check.)
GROUP_TASK = "run"


def _flag(param: click.Parameter) -> str:
    """The task's argument name for a Click parameter: its long flag, or its name. A Python
    keyword gets a trailing "_", which Invoke strips again (``from_`` is ``--from``)."""
    if isinstance(param, click.Option):
        longs = [o for o in param.opts if o.startswith("--")]
        name = (longs[0] if longs else param.opts[0]).lstrip("-").replace("-", "_")
    else:
        name = str(param.name)
    return name + "_" if keyword.iskeyword(name) else name


def _params(cmd: click.Command, ctx: click.Context) -> list[click.Parameter]:
    return [p for p in cmd.get_params(ctx) if p.name != "help"]


def argv_for(path: list[str], cmd: click.Command, ctx: click.Context,
             values: dict[str, Any]) -> list[str]:
    """The opskit command line for a task call: options first, arguments after ``--``."""
    opts: list[str] = []
    args: list[str] = []
    for p in _params(cmd, ctx):
        value = values.get(_flag(p))
        if value is None or value is False or value == [] or value == ():
            continue
        if isinstance(p, click.Argument):
            args += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
            continue
        assert isinstance(p, click.Option)
        flag = next((o for o in p.opts if o.startswith("--")), p.opts[0])
        if p.is_flag:
            opts.append(flag)
        else:
            for v in value if p.multiple and isinstance(value, (list, tuple)) else [value]:
                opts += [flag, str(v)]
    return [*path, *opts, *(["--", *args] if args else [])]


@contextmanager
def _dash_h_inventory(c: Context) -> Iterator[str | None]:
    """With ``fab -H``, Fabric calls the task once per host with its Connection: that host
    becomes a one-host inventory, reached with opskit's rules (known_hosts checked)."""
    host = getattr(c, "host", None)
    if host is None:
        yield None
        return
    host_vars: dict[str, Any] = {"ansible_host": host, "ansible_port": c.port,
                                 "ansible_user": c.user}
    keys = c.connect_kwargs.get("key_filename")
    if keys:  # fab -i KEY
        host_vars["ansible_ssh_private_key_file"] = keys if isinstance(keys, str) else keys[0]
    with tempfile.NamedTemporaryFile("w", prefix="opskit-fab-", suffix=".yml") as fh:
        yaml.safe_dump({"all": {"hosts": {host: host_vars}}}, fh)
        fh.flush()
        yield fh.name


def make_task(path: list[str], cmd: click.Command, ctx: click.Context,
              name: str | None = None) -> Task:  # type: ignore[type-arg]
    task_name = name or path[-1]
    named = [(p, _flag(p)) for p in _params(cmd, ctx)]

    def body(c: Context, **values: Any) -> None:
        from opskit.cli import run

        with _dash_h_inventory(c) as inv:
            if inv is not None:
                values = {**values, "inventory": inv, "limit": None}
            code = run(argv_for(path, cmd, ctx, values), via="fab")
        if code:
            raise Exit(code=code)

    # Invoke reads the task's arguments from the body's signature.
    sig = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for p, arg in named:
        default: Any = False if isinstance(p, click.Option) and p.is_flag else None
        sig.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default))
    body.__signature__ = inspect.Signature(sig)  # type: ignore[attr-defined]
    body.__name__ = task_name.replace("-", "_")
    body.__doc__ = " ".join((cmd.help or "").split("\n\n")[0].split()) or cmd.name
    helps = {arg: (getattr(p, "help", None) or p.human_readable_name) for p, arg in named}
    iterable = [n for p, n in named if (isinstance(p, click.Option) and p.multiple)
                or (isinstance(p, click.Argument) and p.nargs == -1)]
    positional = [n for p, n in named if isinstance(p, click.Argument) and p.nargs != -1]
    return Task(body, name=task_name, help=helps, auto_shortflags=False,
                positional=positional, iterable=iterable)


def namespace(root: click.Group | None = None) -> Collection:
    """The Fabric collection mirroring opskit's Click tree (groups become namespaces)."""
    if root is None:
        from opskit.cli import cli as root
    ctx = click.Context(root, info_name="opskit")
    return _collection(root, ctx, [], None)


def _collection(group: click.Group, ctx: click.Context, path: list[str],
                name: str | None) -> Collection:
    coll = Collection(name) if name else Collection()
    if path and group.invoke_without_command:  # `opskit health` runs by itself: `fab health`
        coll.add_task(make_task(path, group, ctx, GROUP_TASK), default=True)
    for sub_name in group.list_commands(ctx):
        if not path and sub_name in SKIP:
            continue
        sub = group.get_command(ctx, sub_name)
        assert sub is not None
        assert sub_name != GROUP_TASK, f"a subcommand may not be named {GROUP_TASK}"
        sub_ctx = click.Context(sub, info_name=sub_name, parent=ctx)
        if isinstance(sub, click.Group):
            coll.add_collection(_collection(sub, sub_ctx, [*path, sub_name], sub_name))
        else:
            coll.add_task(make_task([*path, sub_name], sub, sub_ctx), name=sub_name)
    return coll


def mutating_commands(root: click.Group | None = None) -> dict[str, Callable[..., Any]]:
    """Every mutating Click command ("pg failover", ...) and its callback (for tests)."""
    if root is None:
        from opskit.cli import cli as root
    found: dict[str, Callable[..., Any]] = {}

    def walk(group: click.Group, ctx: click.Context, path: list[str]) -> None:
        for sub_name in group.list_commands(ctx):
            sub = group.get_command(ctx, sub_name)
            assert sub is not None
            if isinstance(sub, click.Group):
                walk(sub, click.Context(sub, info_name=sub_name, parent=ctx), [*path, sub_name])
            elif sub.callback is not None and hasattr(sub.callback, "opskit_mutating"):
                found[" ".join([*path, sub_name])] = sub.callback

    walk(root, click.Context(root, info_name="opskit"), [])
    return found

