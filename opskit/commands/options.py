"""Options shared by every command, and the per-invocation application context.

The fleet options (-i, -l, -f, --json, -v, ...) are accepted both before and after the
command name (``opskit -l app exec ...`` and ``opskit exec -l app ...``), like pip's
shared options; whichever is given last wins.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from opskit import inventory as inventory_mod
from opskit.errors import InventoryError
from opskit.inventory import Host, Inventory
from opskit.output import Environment
from opskit.runner.fleet import RunOptions
from opskit.transport.connection import ConnectOptions

DEFAULT_FORKS = 50


@dataclass
class AppContext:
    inventory_path: str | None = None
    limit: str | None = None
    forks: int = DEFAULT_FORKS
    json: bool = False
    verbose: bool = False
    connect_timeout: float = 10.0
    insecure_host_keys: bool = False
    argv: list[str] = field(default_factory=lambda: list(sys.argv[1:]))
    via: str = "opskit"  # the front end: "opskit" (this CLI) or "fab" (the Fabric tasks)
    _env: Environment | None = None
    _inventory: Inventory | None = None

    @property
    def env(self) -> Environment:
        # Built on first use, after every option (e.g. --json) has been parsed.
        if self._env is None:
            self._env = Environment(json=self.json, verbose=self.verbose)
        return self._env

    def inventory(self, *, discover: bool = True) -> Inventory:
        """The inventory of -i (loaded once); ``discover=False``: EC2 sources not queried."""
        if self._inventory is None:
            if not self.inventory_path:
                raise InventoryError(
                    "no inventory given",
                    hint="pass -i PATH (a YAML file or a directory) or set OPSKIT_INVENTORY",
                )
            self._inventory = inventory_mod.load(self.inventory_path, discover=discover)
        return self._inventory

    def select(self, default: str | None = None) -> list[Host]:
        """Hosts chosen by --limit (or ``default`` when no --limit was given)."""
        return self.inventory().select(self.limit or default)

    def run_options(self, command_timeout: float | None = None) -> RunOptions:
        return RunOptions(
            forks=self.forks,
            command_timeout=command_timeout,
            connect=ConnectOptions(
                connect_timeout=self.connect_timeout,
                insecure_host_keys=self.insecure_host_keys,
            ),
        )


pass_app = click.make_pass_decorator(AppContext, ensure=True)


def _store(attr: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        # Unset values (None/False) never overwrite what the other position set.
        if value is None or value is False:
            return
        app = ctx.ensure_object(AppContext)
        # Each level (opskit, a group, its subcommand) has the shared options: an environment
        # default read again at a lower level must not replace `-i X` given at a higher one.
        source = ctx.get_parameter_source(param.name or "")
        if source is not click.core.ParameterSource.COMMANDLINE and \
                getattr(app, attr, None) not in (None, False):
            return
        setattr(app, attr, value)

    return callback


def _positive(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None and value < 1:
        raise click.BadParameter(f"must be at least 1, got {value}", ctx=ctx, param=param)
    _store(param.name or "")(ctx, param, value)


class Seconds(click.ParamType):
    """A duration in seconds: a positive, finite number (0.5 is fine).

    0 would mean a non-blocking socket, a negative or NaN timeout an error deep in paramiko
    reported as "unreachable", inf a wait for ever: all refused here, as bad input (exit 1).
    """

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds (e.g. 3 or 0.5)", param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"must be a positive, finite number of seconds, got {value!r}", param, ctx)
        return number


SECONDS = Seconds()


SHARED = [
    click.option(
        "-i", "--inventory", "inventory_path", envvar="OPSKIT_INVENTORY", metavar="PATH",
        expose_value=False, callback=_store("inventory_path"),
        help="Inventory YAML file, EC2 source or directory (env OPSKIT_INVENTORY). "
        "Example: -i inventory/production.yml",
    ),
    click.option(
        "-l", "--limit", metavar="PATTERN", expose_value=False, callback=_store("limit"),
        help="Hosts to act on: names, groups, globs, a:b union, !x exclusion, &y "
        "intersection. Example: -l 'app:&us-east-1a:!app07'",
    ),
    click.option(
        "-f", "--forks", type=int, metavar="N", expose_value=False, callback=_positive,
        help=f"At most N hosts in flight at once (default {DEFAULT_FORKS}). Example: -f 10",
    ),
    click.option(
        "--connect-timeout", type=SECONDS, metavar="S", expose_value=False,
        callback=_store("connect_timeout"),
        help="Seconds to wait for each SSH connection (default 10). Example: --connect-timeout 3",
    ),
    click.option(
        "--json", "json", is_flag=True, default=None, expose_value=False, callback=_store("json"),
        help="Print one JSON document on stdout and nothing else. Example: --json | jq .summary",
    ),
    click.option(
        "-v", "--verbose", is_flag=True, default=None, expose_value=False,
        callback=_store("verbose"),
        help="Show tracebacks and more detail. Example: -v",
    ),
    click.option(
        "--insecure-accept-unknown-host-keys", "insecure_host_keys", is_flag=True, default=None,
        expose_value=False, callback=_store("insecure_host_keys"),
        help="UNSAFE: accept any SSH host key without checking known_hosts (opens you to "
        "man-in-the-middle attacks). Only for throwaway hosts.",
    ),
]


def shared_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Attach the shared fleet options to a command or group."""
    for option in reversed(SHARED):
        fn = option(fn)
    return fn
