"""The root command: global options, command registration, and the exit-status map."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import traceback
from types import FrameType

import click

from opskit import __version__, errors
from opskit.commands.options import AppContext, shared_options
from opskit.redact import mask_text
from opskit.runner import interrupts
from opskit.transport.errors import CommandFailed, CommandTimedOut, ConnectFailed

# Command name -> module under opskit.commands. Imported only when the command runs (or for
# --help): `opskit exec` does not pay for boto3, psycopg or the lab's modules at start-up,
# which at 100 hosts was a tenth of its client CPU.
COMMANDS = {
    "inventory": "inventory", "exec": "exec_", "deploy": "deploy", "rollback": "rollback",
    "releases": "releases", "snapshot": "snapshot", "pg": "pg", "redis": "redis_",
    "cache": "cache", "journal": "journal", "lab": "lab", "completion": "completion",
    "health": "health", "top": "top", "lb": "lb",
}

EPILOG = """\b
Examples:
  opskit -i inventory/production.yml inventory --graph
  opskit -i inventory/lab.yml exec -l app --yes -- uptime
  opskit journal --last 5
Exit codes: 0 ok, 1 bad input, 2 some hosts failed, 3 some unreachable,
4 refused by a safety check, 130 interrupted.
"""


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(f"opskit.commands.{module}").command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="opskit")
@shared_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """opskit: operations toolbox for a fleet of EC2 hosts."""
    ctx.ensure_object(AppContext)


def _usage_error(exc: click.ClickException) -> None:
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "opskit"
    print(mask_text(f"error: {exc.format_message()}"), file=sys.stderr)
    print(f"hint: see '{where} --help'", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    code = run(list(sys.argv[1:] if argv is None else argv))
    sys.stdout.flush()
    sys.stderr.flush()

    # At exit Python joins worker threads; a Ctrl-C then would print a traceback from
    # threading's shutdown. Everything is said and flushed: leave at once, with the code.
    def leave(signum: int, frame: FrameType | None) -> None:
        os._exit(code)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, leave)
        signal.signal(signal.SIGTERM, leave)
    sys.exit(code)


def run(args: list[str], *, via: str = "opskit") -> int:
    """Run one command line and map every outcome to its exit code (the one exit-status map,
    for both front ends: ``via`` is "fab" for the Fabric tasks)."""
    app = AppContext(argv=list(args), via=via)
    with interrupts.installed():
        try:
            return _run(app, args)
        except KeyboardInterrupt:  # a signal while an outcome was being reported
            print("interrupted", file=sys.stderr)
            return errors.EXIT_INTERRUPTED


def _run(app: AppContext, args: list[str]) -> int:
    try:
        try:
            code = cli.main(args=args, prog_name="opskit", standalone_mode=False, obj=app)
        except ConnectFailed as exc:  # a host a single-host command needs
            raise errors.HostUnreachable(f"{exc.host} is unreachable: {exc.message}",
                                         hint=exc.hint) from exc
        except CommandTimedOut as exc:
            raise errors.StepError(f"a remote step timed out: {exc}") from exc
        except CommandFailed as exc:  # a remote step outside the fleet runner's per-host report
            hint = getattr(exc, "hint", None) or ("-v shows where it failed; the host's own "
                                                  "message is above")
            raise errors.StepError(str(exc), hint=hint) from exc
    except interrupts.Stopped as exc:  # at a safe point: the state left, how to continue
        if app.verbose:
            traceback.print_exc()
        print(mask_text(f"stopped: {exc.message}"), file=sys.stderr)
        if exc.hint:
            print(mask_text(f"continue: {exc.hint}"), file=sys.stderr)
        code = exc.exit_code
    except errors.OpskitError as exc:
        if app.verbose:
            traceback.print_exc()
        app.env.error(exc)
        code = exc.exit_code
    except click.exceptions.Abort as exc:  # Click's name for a KeyboardInterrupt (or EOF)
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        print("interrupted" if interrupted else "aborted", file=sys.stderr)
        code = errors.EXIT_INTERRUPTED
    except click.ClickException as exc:
        _usage_error(exc)
        code = errors.EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = errors.EXIT_INTERRUPTED
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    return code if isinstance(code, int) else 0

