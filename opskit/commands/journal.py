"""``opskit journal``: the runs opskit made (one line each), and one run's records."""

from __future__ import annotations

from typing import Any

import click

from opskit import journal
from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.errors import UsageError

STATUS_STYLE = {journal.OK: "green", journal.FAILED: "bold red", journal.INTERRUPTED: "bold red",
                journal.RUNNING: "yellow"}


@click.group(
    "journal", invoke_without_command=True,
    epilog="""\b
Examples:
  opskit journal                     # every run, one line each
  opskit journal --last 20
  opskit journal show 20261201T031502Z-4f1c2a9e
  opskit journal --json | jq '.runs[] | select(.status == "interrupted")'
  OPSKIT_JOURNAL=/var/log/opskit.jsonl opskit journal
""",
)
@click.option("-n", "--last", type=click.IntRange(min=1), metavar="N",
              help="Only the last N runs. Example: --last 5")
@shared_options
@pass_app
@click.pass_context
def command(ctx: click.Context, app: AppContext, last: int | None) -> int | None:
    """What opskit changed: one line per run -- when, who, the command, its hosts, its status.

    A run is one invocation of a mutating command. Its status is ok, failed, dry run,
    running, or interrupted: started (the record written before its first change) but no end
    -- the process was killed or its machine died; `opskit journal show RUN` then shows how far
    it got. The journal is ~/.local/state/opskit/journal.jsonl (env OPSKIT_JOURNAL overrides).
    """
    if ctx.invoked_subcommand is not None:
        return None
    runs = journal.runs(journal.read())
    runs = runs[-last:] if last else runs
    env = app.env
    if env.json:
        env.emit_json({"path": str(journal.journal_path()), "runs": runs})
        return 0
    if not runs:
        env.line(f"the journal is empty ({journal.journal_path()})")
        return 0
    rows = [(r["time"], r["user"], r["run_id"], _argv(r), len(r["hosts"]), r["status"],
             "" if r["exit_code"] is None else r["exit_code"]) for r in runs]
    env.table(("time", "user", "run", "command", "hosts", "status", "exit"), rows,
              styles=[STATUS_STYLE.get(r["status"]) for r in runs])
    return 0


@command.command("show", epilog="""\b
Examples:
  opskit journal show 20261201T031502Z-4f1c2a9e
  opskit journal show 20261201T0315          # a unique prefix is enough
  opskit journal show 20261201T031502Z-4f1c2a9e --json | jq '.records[].phase'
""")
@click.argument("run_id", metavar="RUN")
@shared_options
@pass_app
def show(app: AppContext, run_id: str) -> int:
    """One run: its started record (targets, plan), each step as it ended, and its end.

    RUN is a run id from `opskit journal` (or a unique prefix of one).
    """
    entries = journal.read()
    ids = sorted({e["run_id"] for e in entries if str(e.get("run_id", "")).startswith(run_id)})
    if len(ids) != 1:
        raise UsageError(f"{'no' if not ids else len(ids)} runs match {run_id!r}",
                         hint="`opskit journal` lists the run ids"
                         + (f" (matches: {', '.join(ids[:5])})" if ids else ""))
    records = [e for e in entries if e.get("run_id") == ids[0]]
    summary = journal.runs(records)[0]
    env = app.env
    if env.json:
        env.emit_json({"run": summary, "records": records})
        return 0
    env.line(f"run {summary['run_id']}: {_argv(summary)}", style="bold")
    env.line(f"by {summary['user']} on {summary['operator_host']}, started {summary['time']}; "
             f"status {summary['status']}"
             + ("" if summary["exit_code"] is None else f" (exit {summary['exit_code']})"),
             style=STATUS_STYLE.get(summary["status"]))
    env.table(("time", "phase", "what", "hosts", "outcome"),
              [(e.get("time", "?"), e.get("phase", "end"), _what(e), ", ".join(e.get("hosts", [])),
                _outcome(e)) for e in records])
    if summary["status"] == journal.INTERRUPTED:
        env.line("no end record: the run was killed (or its machine died) after the last step "
                 "above; check the hosts' state before acting (e.g. `opskit pg status`)",
                 style="bold red")
    return 0


def _argv(run: dict[str, Any]) -> str:
    text = " ".join(run.get("argv") or []) or str(run.get("command", ""))
    return f"[fab] {text}" if run.get("via") == "fab" else text


def _what(e: dict[str, Any]) -> str:
    if e.get("phase") == "started":
        plan = e.get("plan")
        return "started" + (f": {str(plan)[:160]}" if plan else "")
    d = e.get("details") or {}
    if "title" in d:
        return f"{d.get('step', '')}. {d['title']}".lstrip(". ") + (
            f": {d['detail']}" if d.get("detail") else "")
    return str(d.get("error") or e.get("command", ""))


def _outcome(e: dict[str, Any]) -> str:
    if e.get("phase") == "started":
        return ""
    counts: dict[str, int] = {}
    for o in (e.get("outcomes") or {}).values():
        counts[o.get("status", "?")] = counts.get(o.get("status", "?"), 0) + 1
    tail = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    return f"{tail} exit {e.get('exit_code', '')}".strip()
