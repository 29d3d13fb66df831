"""``opskit health``: Nagios-style health checks (local with psutil, or fleet-wide), Munin."""

from __future__ import annotations

from typing import Any

import click
from invoke import Context

from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.errors import OpskitError
from opskit.health import checks as ck
from opskit.health import local, munin, render, survey, workingset
from opskit.transport.session import Session

EXIT_HELP = """\b
Exit codes (Nagios plugin codes, NOT opskit's usual ones):
  0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (unreachable host, probe failed,
  bad input). Fleet-wide: the worst host (CRITICAL > UNKNOWN > WARNING > OK)."""


class NagiosGroup(click.Group):
    """Bad input exits 3 (UNKNOWN), never 1, which Nagios would read as WARNING."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _unknown(OpskitError(exc.format_message(),
                                       hint="see 'opskit health --help'")) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _unknown(OpskitError(exc.format_message(),
                                       hint="see 'opskit health --help'")) from exc
        except OpskitError as exc:
            raise _unknown(exc) from exc


def _unknown(exc: OpskitError) -> OpskitError:
    exc.exit_code = ck.NAGIOS_UNKNOWN
    return exc


@click.group("health", cls=NagiosGroup, invoke_without_command=True, epilog=f"""\b
Examples:
  opskit health --local                                 # this machine, built-in thresholds
  opskit -i inventory/production.yml health --local --host db1   # db1's health.* thresholds
  opskit health --local --warn disk_percent=70 --crit load_per_cpu=3 --json
  opskit health -l db                                   # every db host, one table
  opskit health munin config                            # Munin plugin protocol
{EXIT_HELP}
""")
@click.option("--local", "local_", is_flag=True,
              help="Check the machine opskit runs on (psutil), not the fleet. "
              "Example: --local")
@click.option("--host", "host_name", metavar="NAME",
              help="With --local: use inventory host NAME's health.* thresholds and its "
              "postgres/redis data for the working-set check. Example: --host db1")
@click.option("--warn", multiple=True, metavar="KEY=V",
              help="Override a WARNING threshold (repeatable; KEY=off disables it). "
              "Example: --warn disk_percent=70")
@click.option("--crit", multiple=True, metavar="KEY=V",
              help="Override a CRITICAL threshold (repeatable). Example: --crit memory_percent=98")
@click.option("--interval", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              metavar="S", help="Seconds over which CPU, disk I/O and network error rates are "
              "measured. Example: --interval 5")
@click.option("--no-working-set", is_flag=True,
              help="Skip the PostgreSQL/Redis working-set check (it maps the data directory). "
              "Example: --no-working-set")
@shared_options
@pass_app
@click.pass_context
def command(ctx: click.Context, app: AppContext, local_: bool, host_name: str | None,
            warn: tuple[str, ...], crit: tuple[str, ...], interval: float,
            no_working_set: bool) -> int | None:
    """Health checks with thresholds: CPU and load, memory and swap, disk space and inodes,
    disk I/O, network errors, open files, top processes, and whether PostgreSQL's data
    directory / Redis's memory still fits in RAM.

    With --local, this machine (psutil). Otherwise every host selected by -l over SSH, with a
    stdlib-only probe (opskit is not installed on targets). Thresholds: built-in defaults,
    then the host's `health:` inventory vars, then --warn/--crit.
    """
    if ctx.invoked_subcommand:
        return None
    w, c = ck.parse_overrides(warn, "--warn"), ck.parse_overrides(crit, "--crit")
    if local_:
        return _local(app, host_name, w, c, interval, not no_working_set)
    if not app.inventory_path:
        raise OpskitError("give --local, or an inventory (-i) to check the fleet",
                          hint="e.g. opskit health --local, or opskit -i inv.yml health -l db")
    hosts = app.select()
    with app.env.progress(len(hosts), "health") as observer:
        fh = survey.run(hosts, app.run_options(), interval=interval, warn=w, crit=c,
                              working_set=not no_working_set, observer=observer)
    env = app.env
    if env.json:
        env.emit_json(fh.to_dict())
        return fh.status
    env.line(f"HEALTH {ck.NAMES[fh.status]} - {len(fh.hosts)} hosts: " + ", ".join(
        f"{sum(h.status == s for h in fh.hosts)} {ck.NAMES[s]}"
        for s in (ck.NAGIOS_CRITICAL, ck.NAGIOS_UNKNOWN, ck.NAGIOS_WARNING, ck.NAGIOS_OK)))
    env.table(render.HOST_COLUMNS, [render.host_row(h) for h in fh.hosts],
              styles=[render.STYLE[h.status] for h in fh.hosts])
    for note in fh.notes:
        env.line(f"note: {note}", style="dim")
    return fh.status


def _local(app: AppContext, host_name: str | None, warn: dict[str, float | None],
           crit: dict[str, float | None], interval: float, working_set: bool) -> int:
    env = app.env
    host = survey.inventory_host(app.inventory(), host_name) if host_name else None
    base = ck.from_vars(host) if host else ck.Thresholds()  # errors name file and line
    sample = local.collect(interval)
    if host and working_set:
        # The data directories named in the inventory, measured here (the host is this machine).
        sample["working_set"] = workingset.measure(Session(host, Context()),
                                                   int(sample["memory"]["total"]))
    name = host.name if host else sample["hostname"]
    hh = survey.judge(name, sample, base.with_overrides(warn, crit))
    notes = survey.notes_for([host]) if host else []
    if env.json:
        env.emit_json({**hh.to_dict(), "exit_code": hh.status, "notes": notes})
        return hh.status
    env.line(ck.status_line("HEALTH", hh.checks), style=render.STYLE[hh.status])
    env.table(("check", "target", "value", "warn", "crit", "status", "detail"),
              render.check_rows(hh.checks), styles=[render.STYLE[x.status] for x in hh.checks])
    env.table(("top by", "pid", "name", "cpu", "rss"), render.process_rows(sample),
              title="top processes")
    for note in notes:
        env.line(f"note: {note}", style="dim")
    return hh.status


@command.group("munin", epilog="""\b
Examples:
  opskit health munin config
  opskit health munin fetch
  ln -s "$(command -v opskit-munin)" /etc/munin/plugins/opskit   # what munin-node runs
""")
def munin_group() -> None:
    """Munin plugin protocol for this machine: load, memory, disk and inode usage, and
    opskit's own actions (deploys, snapshots, failovers... from the journal), as multigraph."""


def _munin(app: AppContext, host_name: str | None, mode: str) -> int:
    t = ck.Thresholds()
    if host_name:
        t = ck.from_vars(survey.inventory_host(app.inventory(), host_name))
    gs = munin.local_graphs(t)
    app.env.stdout.write(munin.config_text(gs) if mode == "config" else munin.fetch_text(gs))
    app.env.stdout.flush()
    return 0


_HOST_OPTION = click.option(
    "--host", "host_name", metavar="NAME",
    help="Take warning/critical levels from inventory host NAME's health.* vars. "
    "Example: --host db1")


@munin_group.command("config", epilog="""\b
Examples:
  opskit health munin config
  opskit -i inventory/production.yml health munin config --host db1
""")
@_HOST_OPTION
@shared_options
@pass_app
def munin_config(app: AppContext, host_name: str | None) -> int:
    """Graph definitions (what munin-node asks with `config`)."""
    return _munin(app, host_name, "config")


@munin_group.command("fetch", epilog="""\b
Examples:
  opskit health munin fetch
  opskit health munin fetch | grep '^multigraph\\|load1'
""")
@_HOST_OPTION
@shared_options
@pass_app
def munin_fetch(app: AppContext, host_name: str | None) -> int:
    """Current values (what munin-node asks with no argument)."""
    return _munin(app, host_name, "fetch")
