"""``opskit top``: a live view of the fleet's load, memory, disk and health status."""

from __future__ import annotations

import threading
import time

import click
from rich.console import Group
from rich.live import Live
from rich.text import Text

from opskit import errors
from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.health import live, render, survey
from opskit.health.survey import FleetHealth


@click.command("top", epilog="""\b
Examples:
  opskit top                      # every host, refreshed every 3 s; q quits
  opskit top -l db --interval 10
  opskit top -l app | cat         # not a terminal: one table, then exit
""")
@click.option("--interval", type=click.FloatRange(1, 3600), default=3.0, show_default=True,
              metavar="S", help="Seconds between refreshes. Example: --interval 10")
@shared_options
@pass_app
def command(app: AppContext, interval: float) -> int:
    """Live fleet view: load, CPU, memory, swap, fullest disk and health status per host
    (the `health` checks, without the working-set check), refreshed every --interval seconds;
    `q` quits. When stdout is not a terminal, prints one table and exits.

    Exit status: opskit's usual codes (0, or 3 if a host was unreachable in the last sample).
    """
    env = app.env
    hosts = app.select()
    opts = app.run_options()

    def sample() -> FleetHealth:
        # A short rate window keeps a round quick; working sets are for `health`.
        return survey.run(hosts, opts, interval=0.5, working_set=False)

    if not env.stdout_isatty or env.json:
        fh = sample()
        if env.json:
            env.emit_json(fh.to_dict(with_sample=False))
        else:
            env.table(render.HOST_COLUMNS, [render.host_row(h) for h in fh.hosts])
            for note in fh.notes:
                env.line(f"note: {note}")
        return _exit(fh)
    latest: list[FleetHealth] = []
    done = threading.Event()

    def worker() -> None:
        # Samples in the background so that keys are read at once, even mid-sample.
        while not done.is_set():
            t0 = time.monotonic()
            latest.append(sample())
            done.wait(max(0.0, interval - (time.monotonic() - t0)))

    threading.Thread(target=worker, daemon=True, name="top-sampler").start()
    shown = None
    notes = Text("\n".join(f"note: {n}" for n in survey.notes_for(hosts)), style="dim")

    def view() -> Group:
        fh = latest[-1] if latest else None
        return Group(live.table(fh, live.title(fh, len(hosts), interval)), notes)

    try:
        with live.keys() as keys, Live(view(), console=env.out, auto_refresh=False) as screen:
            while True:
                key = keys.wait(0.2)
                if key in ("q", "Q"):
                    break
                if latest and latest[-1] is not shown:
                    shown = latest[-1]
                    screen.update(view(), refresh=True)
    finally:
        done.set()
    return _exit(latest[-1]) if latest else 0


def _exit(fh: FleetHealth) -> int:
    unreachable = any(h.reach == "unreachable" for h in fh.hosts)
    return errors.EXIT_UNREACHABLE if unreachable else errors.EXIT_OK
