"""Rendering of fleet results shared by every command that runs over hosts."""

from __future__ import annotations

from typing import Any

from opskit.output import STATUS_STYLE, Environment
from opskit.runner.fleet import OK, FleetResult, HostResult


def render_host_block(env: Environment, r: HostResult) -> None:
    """One host's outcome and output, printed as soon as the host finishes."""
    rc = f" | rc={r.exit_status}" if r.exit_status is not None else ""
    env.line(f"{r.host} | {r.status}{rc} | {r.duration:.2f}s", style=STATUS_STYLE.get(r.status))
    for line in r.stdout.splitlines():
        env.line(f"  {line}")
    if r.status != OK:
        for line in r.stderr.splitlines()[-10:]:
            env.line(f"  ! {line}", style="red")
        if r.error:
            env.line(f"  error: {r.error}", style="red")
        if r.hint:
            env.line(f"  hint: {r.hint}", style="yellow")


def summary_line(result: FleetResult) -> str:
    counts = {k: v for k, v in result.counts().items() if v}
    parts = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no hosts"
    tail = " (interrupted)" if result.interrupted else ""
    return f"{len(result.results)} hosts: {parts} in {result.duration:.2f}s{tail}"


def render_fleet_result(env: Environment, result: FleetResult, extra: dict[str, Any]) -> None:
    """The end of a fleet command: one JSON document, or a summary table and a line."""
    if env.json:
        env.emit_json({**extra, **result.to_dict()})
        return
    summary_rows = []
    for status, count in result.counts().items():
        if count:
            names = [r.host for r in result.by_status(status)]
            shown = " ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
            summary_rows.append((status, count, shown))
    env.table(("status", "hosts", "names"), summary_rows, title="summary",
              styles=[STATUS_STYLE.get(row[0]) for row in summary_rows])
    not_ok = [r for r in result.results if r.status != OK]
    if not_ok or env.verbose:
        rows = [
            (r.host, r.status, r.exit_status, f"{r.duration:.2f}", _first_line(r))
            for r in (result.results if env.verbose else not_ok)
        ]
        env.table(
            ("host", "status", "rc", "seconds", "error"),
            rows,
            title="hosts not ok" if not env.verbose else "hosts",
            styles=[STATUS_STYLE.get(row[1]) for row in rows],
        )
    env.line(summary_line(result), style="bold")


def _first_line(r: HostResult) -> str:
    if r.error:
        return r.error
    tail = r.stderr.strip().splitlines()
    return tail[-1] if tail else ""
