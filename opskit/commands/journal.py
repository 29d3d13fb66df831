"""``opskit journal``: show the audit journal of mutating actions."""

from __future__ import annotations

import click

from opskit import journal
from opskit.commands.options import AppContext, pass_app, shared_options


@click.command(
    "journal",
    epilog="""\b
Examples:
  opskit journal --last 20
  opskit journal --run 20261201T031502Z-4f1c2a9e
  opskit journal --json --last 1 | jq '.entries[0].outcomes'
  OPSKIT_JOURNAL=/var/log/opskit.jsonl opskit journal
""",
)
@click.option("-n", "--last", type=click.IntRange(min=1), metavar="N",
              help="Only the last N entries. Example: --last 5")
@click.option("--run", "run_id", metavar="ID",
              help="Only the records of one invocation (its runbook steps and its end). "
              "Example: --run 20261201T031502Z-4f1c2a9e")
@shared_options
@pass_app
def command(app: AppContext, last: int | None, run_id: str | None) -> int:
    """Show what opskit changed: time, user, command, hosts and outcome of each run.

    The journal is ~/.local/state/opskit/journal.jsonl (env OPSKIT_JOURNAL overrides).
    """
    entries = journal.read()
    if run_id:
        entries = [e for e in entries if e.get("run_id") == run_id]
    entries = entries[-last:] if last else entries
    env = app.env
    if env.json:
        env.emit_json({"path": str(journal.journal_path()), "entries": entries})
        return 0
    if not entries:
        env.line(f"the journal is empty ({journal.journal_path()})")
        return 0
    rows = []
    for e in entries:
        outcomes = e.get("outcomes", {})
        counts: dict[str, int] = {}
        for o in outcomes.values():
            counts[o.get("status", "?")] = counts.get(o.get("status", "?"), 0) + 1
        summary = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        argv = " ".join(e.get("argv", [])) or e.get("command", "")
        if e.get("via") == "fab":  # run through a Fabric task: say so
            argv = f"[fab] {argv}"
        rows.append((e.get("time", "?"), e.get("user", "?"), argv, len(e.get("hosts", [])),
                     summary, e.get("exit_code", "")))
    env.table(("time", "user", "command", "hosts", "outcome", "exit"), rows)
    return 0
