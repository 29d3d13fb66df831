"""Options shared by every command, and the per-invocation application context.

The fleet options (-i, -l, -f, --json, -v, ...) are accepted both before and after the
command name (``opskit -l app exec ...`` and ``opskit exec -l app ...``), like pip's
shared options; whichever is given last wins.

The sudo password (``-K``/``--ask-sudo-pass``, ``--sudo-pass-file``, ``OPSKIT_SUDO_PASS_FILE``)
is resolved once, when the command (not its group) starts: after every option is parsed,
before the confirmation and before any host is contacted (see :func:`shared_options`).
"""

from __future__ import annotations

import functools
import getpass
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from opskit import inventory as inventory_mod
from opskit import secretfile
from opskit.errors import InventoryError, UsageError
from opskit.inventory import Host, Inventory
from opskit.output import Environment
from opskit.runner.fleet import RunOptions
from opskit.transport.connection import ConnectOptions
from opskit.transport.session import SudoPassword

DEFAULT_FORKS = 50
SUDO_PASS_FILE_ENV = "OPSKIT_SUDO_PASS_FILE"
# Read by nobody: named so that whoever sets it learns why (see _refuse_password_in_env).
SUDO_PASSWORD_ENV = "OPSKIT_SUDO_PASSWORD"


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
    ask_sudo_pass: bool = False
    sudo_pass_file: str | None = None
    sudo_pass_file_from_env: bool = False
    sudo_password: SudoPassword | None = None
    _sudo_resolved: bool = False
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
            sudo_password=self.sudo_password,
        )

    def resolve_sudo_password(self) -> None:
        """Ask for (-K) or read (--sudo-pass-file, $OPSKIT_SUDO_PASS_FILE) the sudo password,
        once per run. An explicit option beats the environment's file; -K and an explicit
        file together are a contradiction, refused."""
        if self._sudo_resolved:
            return
        self._sudo_resolved = True
        _refuse_password_in_env()
        explicit_file = self.sudo_pass_file if not self.sudo_pass_file_from_env else None
        if self.ask_sudo_pass and explicit_file:
            raise UsageError("--ask-sudo-pass and --sudo-pass-file both given",
                             hint="give the sudo password one way: asked on the terminal (-K) "
                             "or read from a file (--sudo-pass-file FILE)")
        if self.ask_sudo_pass:
            self.sudo_password = ask_sudo_password(self.env.stdin_isatty)
        elif self.sudo_pass_file:
            self.sudo_password = read_sudo_password_file(self.sudo_pass_file)


def ask_sudo_password(stdin_isatty: bool) -> SudoPassword:
    """-K: the password typed once on the terminal, not echoed (getpass: /dev/tty)."""
    if not stdin_isatty:
        raise UsageError("--ask-sudo-pass needs a terminal to ask on (stdin is not a TTY)",
                         hint="in cron or a script, put the password in a file only you can "
                         "read (chmod 600) and pass --sudo-pass-file FILE or set "
                         f"{SUDO_PASS_FILE_ENV}")
    try:
        value = getpass.getpass("sudo password: ")
    except EOFError:
        value = ""
    if not value:
        raise UsageError("no sudo password typed", hint="type the login's sudo password at "
                         "the prompt, or leave out --ask-sudo-pass")
    if any(c in value for c in "\r\0"):
        raise UsageError("the sudo password typed holds a control character (CR or NUL)",
                         hint="sudo reads the password as one line of text")
    return SudoPassword(value, "the prompt")


def read_sudo_password_file(path: str) -> SudoPassword:
    """--sudo-pass-file: the password in a file nobody else may read, owned by the operator
    (or root); one trailing newline is not part of it (opskit.secretfile)."""
    secret = secretfile.read(path, "the sudo password file",
                             how=f"--sudo-pass-file FILE or {SUDO_PASS_FILE_ENV}")
    return SudoPassword.of(secret)


def _refuse_password_in_env() -> None:
    """A password in the environment is inherited by every child process and readable in
    /proc/PID/environ; cron's would sit in the crontab. Say so instead of ignoring it."""
    if os.environ.get(SUDO_PASSWORD_ENV):
        raise UsageError(f"{SUDO_PASSWORD_ENV} is not read: opskit takes no password from "
                         "the environment", hint=f"put the password in a file only you can "
                         f"read (chmod 600) and set {SUDO_PASS_FILE_ENV}=FILE or pass "
                         "--sudo-pass-file FILE")


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


def _store_pass_file(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None:
        return
    app = ctx.ensure_object(AppContext)
    from_env = ctx.get_parameter_source(param.name or "") == click.core.ParameterSource.ENVIRONMENT
    if from_env and app.sudo_pass_file and not app.sudo_pass_file_from_env:
        return  # the environment's file never replaces one named on the command line
    app.sudo_pass_file, app.sudo_pass_file_from_env = str(value), from_env


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
    click.option(
        "-K", "--ask-sudo-pass", "ask_sudo_pass", is_flag=True, default=None,
        expose_value=False, callback=_store("ask_sudo_pass"),
        help="Ask once, on the terminal, for the SSH user's sudo password (for --sudo and "
        "the steps run as root or postgres); it goes to sudo on stdin only. Example: "
        "exec -K --sudo -- 'df -h'",
    ),
    click.option(
        "--sudo-pass-file", metavar="FILE", envvar=SUDO_PASS_FILE_ENV, expose_value=False,
        callback=_store_pass_file,
        help=f"Read the sudo password from FILE (for cron; env {SUDO_PASS_FILE_ENV}): one "
        "line, the file mode 0600 or it is refused. Example: --sudo-pass-file "
        "~/.config/opskit/sudo-pass",
    ),
]


def shared_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Attach the shared fleet options to a command or group. When the command itself runs
    (a group only when it runs alone), the sudo password is resolved first: asked or read
    before the command's own work, confirmation and first connection."""

    @functools.wraps(fn)
    def resolving(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        if not (isinstance(ctx.command, click.Group) and ctx.invoked_subcommand is not None):
            ctx.ensure_object(AppContext).resolve_sudo_password()
        return fn(*args, **kwargs)

    out: Callable[..., Any] = resolving
    for option in reversed(SHARED):
        out = option(out)
    return out
