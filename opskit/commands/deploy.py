"""``opskit deploy``: build once, upload in parallel, roll out in batches with health gates."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import click

from opskit import deploy as deploy_mod
from opskit.commands.mutating import Change, mutating
from opskit.commands.options import AppContext, shared_options
from opskit.commands.render import render_fleet_result
from opskit.deploy import batches
from opskit.output import STATUS_STYLE, Environment
from opskit.runner.fleet import HostResult


@click.command(
    "deploy",
    epilog="""\b
Examples:
  opskit deploy --ref v2 --dry-run                 # the plan: batches, hosts, steps
  opskit deploy --ref v2 --yes                     # canary, then 25% at a time
  opskit deploy --ref main --batch 1,5,25% --max-fail-percent 10 --yes
  opskit deploy --artifact build/app-1.4.tar.gz -l 'app:!app07' --yes
""",
)
@click.option("--ref", metavar="GIT_REF",
              help="Branch, tag or commit of the repo in deploy.repo to `git archive`. "
              "Example: --ref v2")
@click.option("--artifact", "artifact_path", metavar="PATH",
              help="A ready .tar.gz to deploy instead of a git ref. Example: --artifact app.tgz")
@click.option("--batch", default="1,25%", show_default=True, metavar="SPEC",
              help="Rolling batches: counts or percentages, the last one repeats; the first "
              "is the canary. Example: --batch 1,5,25%")
@click.option("--max-fail-percent", type=click.FloatRange(0, 100), default=0.0,
              show_default=True, metavar="P",
              help="Stop before the next batch when more than P% of a batch failed. "
              "Example: --max-fail-percent 10")
@click.option("--no-auto-rollback", is_flag=True,
              help="Leave failed hosts on the new release (and out of the target group) for "
              "inspection. Example: --no-auto-rollback")
@mutating("deploy", locked=True)
@shared_options
def command(app: AppContext, change: Change, ref: str | None, artifact_path: str | None,
            batch: str, max_fail_percent: float, no_auto_rollback: bool) -> int:
    """Deploy a release to the selected hosts (default group `app`).

    Builds the artifact once here, uploads it to every host in parallel, and per batch:
    [leave the ELB target group, drain], unpack, install, switch `current`, reload gunicorn
    (HUP), health-check, [rejoin the target group]. Failed hosts are rolled back.
    Exit status: 0 ok, 2 some host failed, 3 some unreachable.
    """
    env = app.env
    hosts = app.select(default="app")
    options = deploy_mod.DeployOptions(batch, max_fail_percent, not no_auto_rollback)
    batches.parse(batch)  # a bad --batch fails before anything is built
    deploy_mod.load_configs(hosts)  # bad settings fail here, before anything is built
    with tempfile.TemporaryDirectory(prefix="opskit-deploy-") as tmp:
        art = deploy_mod.build(hosts, ref, artifact_path, Path(tmp))
        if change.dry_run:
            plan = deploy_mod.plan(hosts, art, options)
            return change.planned(plan, lambda: _print_plan(env, plan),
                                  [h.name for h in hosts])
        change.begin(f"Deploy {ref or Path(artifact_path or '').name} ({art.release}) to "
                     f"{len(hosts)} hosts in batches {batch}?", targets=[h.name for h in hosts],
                     plan={"release": art.release, "revision": art.revision,
                           "sha256": art.sha256, "batch": batch})
        env.note(f"release {art.release}: {art.size} bytes, sha256 {art.sha256[:16]}...")
        with change.leases(deploy_mod.leases(hosts)), \
                env.progress(len(hosts), "deploy") as observer:
            observer.on_finish.append(lambda r: _render_host(env, r))
            result = deploy_mod.deploy(
                hosts, art, options, app.run_options(), observer=observer, note=env.note,
                on_batch=lambda i, names: env.note(f"batch {i}: {' '.join(names)}"),
            )
    rolled_back = [h for h, d in result.details.items() if d.get("rolled_back_to")]
    change.record_fleet(result.fleet, details={
        "release": art.release, "revision": art.revision, "sha256": art.sha256,
        "batches": result.batches, "stopped_after_batch": result.stopped_after_batch,
        "rolled_back": rolled_back,
    })
    if result.stopped_after_batch and not env.json:
        env.line(f"stopped after batch {result.stopped_after_batch}: its health gate failed; "
                 "later batches were not started", style="bold red")
    if env.json:
        env.emit_json(result.to_dict())
    else:
        render_fleet_result(env, result.fleet, extra={})
    if result.fleet.interrupted:
        text, hint = deploy_mod.interrupted_summary(result, shlex.join(["opskit", *app.argv]))
        env.note(f"stopped: {text}")
        env.note(f"continue: {hint}")
    return result.exit_code


def _print_plan(env: Environment, plan: dict) -> None:  # type: ignore[type-arg]
    art = plan["artifact"]
    env.line(f"dry run: would deploy release {art['release']} (revision {art['revision'][:12]}, "
             f"{art['size']} bytes); nothing will be changed")
    env.line(f"batches {plan['batch']}, max fail {plan['max_fail_percent']:g}%, auto rollback "
             f"{'on' if plan['auto_rollback'] else 'off'}")
    env.table(("batch", "host", "release dir", "steps"),
              [(p["batch"], p["host"], p["release_dir"], " > ".join(p["steps"]))
               for p in plan["plan"]])


def _render_host(env: Environment, r: HostResult) -> None:
    d = r.value if isinstance(r.value, dict) else {}
    parts = [r.host, r.status]
    if d.get("current"):
        parts.append(f"current={d['current']}")
    rl = d.get("reload") or {}
    if rl:
        parts.append(f"{rl.get('method')} master {rl.get('master_pid_before')}"
                     f"->{rl.get('master_pid_after')}")
    parts.append(f"{r.duration:.2f}s")
    env.line(" | ".join(str(p) for p in parts), style=STATUS_STYLE.get(r.status))
    if r.error:
        env.line(f"  error: {r.error}", style="red")
        for line in r.stderr.strip().splitlines()[-5:]:
            env.line(f"  ! {line}", style="red")
