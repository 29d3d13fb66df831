"""``opskit exec``: run an ad-hoc shell command on every selected host."""

from __future__ import annotations

import click

from opskit.commands.mutating import Change, mutating
from opskit.commands.options import SECONDS, AppContext, shared_options
from opskit.commands.render import render_fleet_result, render_host_block
from opskit.errors import UsageError
from opskit.runner import adhoc
from opskit.runner.adhoc import PrefixWriter
from opskit.transport.session import Session


@click.command(
    "exec",
    epilog="""\b
Examples:
  opskit -i inventory/lab.yml exec --yes -- hostname
  opskit exec -l 'app:!app07' --forks 10 --yes -- 'systemctl is-active gunicorn'
  opskit exec -l db --sudo --timeout 30 --yes -- 'df -h /data'
  opskit exec --json --yes -- uptime | jq '.hosts[] | select(.status != "ok")'
""",
)
@click.argument("command", nargs=-1, required=True)
@click.option("--sudo", is_flag=True, help="Run the whole command as root, under one `sudo -n "
              "-- sh -c` (a no-op when the SSH user is root; a sudo that wants a password "
              "fails the host at once, unless given it with -K or --sudo-pass-file). "
              "Example: --sudo")
@click.option("-t", "--timeout", type=SECONDS, metavar="S",
              help="Fail a host whose command runs longer than S seconds (status 'timeout'). "
              "Example: --timeout 30")
@click.option("--stream", is_flag=True,
              help="Print output live, each line prefixed by its host name, instead of one "
              "block per host. Example: --stream")
@mutating("exec")
@shared_options
def command(
    app: AppContext,
    change: Change,
    command: tuple[str, ...],
    sudo: bool,
    timeout: float | None,
    stream: bool,
) -> int:
    """Run a shell COMMAND on every selected host, like `ansible -m shell`.

    Put the command after `--` so that its own options are not read as opskit's.
    Exit status: 0 all ok, 2 some host failed or timed out, 3 some unreachable.
    """
    text = " ".join(command).strip()
    if not text:
        raise UsageError("the command is empty", hint="opskit exec -- uptime")
    hosts = app.select()
    env = app.env
    if change.dry_run:
        names = [h.name for h in hosts]

        def show() -> None:
            env.line(f"would run {text!r}{' with sudo' if sudo else ''} on {len(hosts)} hosts:")
            env.line("  " + " ".join(names))

        return change.planned({"command": text, "sudo": sudo, "hosts": names, "dry_run": True},
                              show, names)
    change.begin(f"Run {text!r} on {len(hosts)} hosts?", targets=[h.name for h in hosts],
                 plan={"command": text, "sudo": sudo})

    writers: list[PrefixWriter] = []

    def attach_streams(session: Session) -> None:
        out = PrefixWriter(session.host.name, env.line)
        err = PrefixWriter(session.host.name, env.line)
        writers.extend((out, err))
        session.out_stream, session.err_stream = out, err

    with env.progress(len(hosts), "exec") as observer:
        if not env.json and not stream:
            observer.on_finish.append(lambda r: render_host_block(env, r))
        result = adhoc.run_command(
            hosts,
            text,
            sudo=sudo,
            options=app.run_options(command_timeout=timeout),
            observer=observer,
            make_session=attach_streams if stream and not env.json else None,
        )
    for writer in writers:
        writer.finish()
    change.record_fleet(result, details={"command": text, "sudo": sudo})
    render_fleet_result(env, result, extra={"command": text})
    return result.exit_code
