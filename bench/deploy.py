"""Deploy benchmark: ``opskit deploy`` to 25 and 50 lab hosts, against an Ansible playbook.

Brings up its own 50-host lab (temp state dir, port 2522: clear of the developer lab on
2222, the tests' on 2322 and the fan-out bench's on 2422), writes per-size inventories in
which the first N lab hosts are all in group ``app`` with the lab's ``deploy:`` settings,
starts gunicorn everywhere with a first deploy, then times in rounds: opskit with one batch,
the Ansible playbook bench/deploy_playbook.yml doing the same steps (unarchive, symlink,
HUP), and for information opskit with its default canary batches and with ELB rotation.
Every run is checked: every host reported ok by the tool *and* serving the new release id
over HTTP. One opskit deploy is profiled per step (bench/deploy_profile.py). Writes its
section of docs/benchmarks.md and downs the lab. Run it with ``make bench`` (as root).
No pass/fail thresholds: it reports, it never asserts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from common import (
    REPORT,
    Cost,
    Done,
    Lab,
    Meter,
    ansible_env,
    background_load,
    children_cpu,
    dist_version,
    fmt,
    lab_down,
    lab_up,
    last_line,
    machine,
    pids,
    program,
    read_text,
    run_tool,
    startup_time,
    take_rounds,
    terminate,
    tree_cpu,
    write_section,
)

import opskit.aws
import opskit.lab
from opskit.deploy.artifact import Artifact, from_git, release_id
from opskit.errors import OpskitError

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "deploy_playbook.yml"
PROFILER = HERE / "deploy_profile.py"
REFS = ("v1", "v2")  # tags of the lab's sample repo; runs alternate between them
SERVE_TIMEOUT = 10.0  # seconds after a run for every host to serve the new release
GOAL_SECONDS = 5.0  # what "a few seconds" is taken to mean
GOAL_RATIO = 3.0
PYTHON = "/usr/bin/python3"  # Ansible's interpreter on the hosts (no discovery round trip)
CANARY = "1,25%"  # opskit deploy's default --batch
PROFILE_STEPS = ("connect", "ship", "install", "elb_deregister", "activate", "health",
                 "elb_register", "other")


# ---------------------------------------------------------------- the fleet


@dataclass(frozen=True)
class Fleet:
    """The lab as the deploy runs see it."""

    lab: Lab
    lab_vars: dict[str, Any]  # all.vars of the lab's inventory (connection settings)
    deploy: dict[str, Any]  # the `deploy:` vars of the lab's `app` group
    host_vars: dict[str, Any]  # all.hosts of the lab's inventory (each host's aws:)
    env: dict[str, str]  # opskit's environment (its own journal)
    ansible: dict[str, str]  # ansible-playbook's environment
    artifacts: dict[str, Artifact]  # per ref, `git archive --format=tar.gz` (for Ansible)

    def names(self, hosts: int) -> list[str]:
        return self.lab.names[:hosts]

    def inventory(self, hosts: int, elb: bool = False) -> Path:
        """The first ``hosts`` lab hosts, all in group app (``elb``: with target_group_arn)."""
        path = self.lab.work / f"deploy-{hosts}{'-elb' if elb else ''}.yml"
        if path.exists():
            return path
        deploy = dict(self.deploy)
        if not elb:
            for key in ("target_group_arn", "drain_timeout", "healthy_timeout"):
                deploy.pop(key, None)
        names = self.names(hosts)
        addresses = dict(zip(self.lab.names, self.lab.addresses, strict=True))
        doc = {"all": {
            "vars": self.lab_vars,
            "children": {"app": {"hosts": {n: {"ansible_host": addresses[n]} for n in names},
                                 "vars": {"deploy": deploy}}},
            "hosts": {n: self.host_vars[n] for n in names if n in self.host_vars},
        }}
        path.write_text(f"# bench/deploy.py: the first {hosts} lab hosts, all in group app"
                        f"{', with ELB rotation' if elb else ''}\n"
                        + yaml.safe_dump(doc, sort_keys=False, width=1000))
        return path

    @property
    def app_port(self) -> int:
        return urllib.parse.urlsplit(str(self.deploy["health_url"])).port or 80

    def app_cpu(self) -> float:
        """CPU-s so far of the lab's gunicorn processes: the masters with the workers they
        reaped, and the live workers (whose time moves to their master when they exit)."""
        bind = re.compile(rf"gunicorn\b.* --bind \S+:{self.app_port}\b")
        return tree_cpu([p for p in pids() if bind.search(_cmdline(p))])

    def app_urls(self, hosts: int) -> dict[str, str]:
        """Each host's app root URL (GET / answers JSON with the release it serves)."""
        health = str(self.deploy["health_url"])
        addresses = self.lab.addresses[:hosts]
        return {n: urllib.parse.urlsplit(health.replace("{address}", a))._replace(path="/")
                .geturl() for n, a in zip(self.names(hosts), addresses, strict=True)}


def _cmdline(pid: int) -> str:
    return read_text(f"/proc/{pid}/cmdline").replace("\0", " ")


def make_fleet(lab: Lab) -> Fleet:
    doc = yaml.safe_load(lab.inventory.read_text())["all"]
    env = {**os.environ, "OPSKIT_JOURNAL": str(lab.work / "journal.jsonl")}
    ansible = {
        **ansible_env(lab, env),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_STDOUT_CALLBACK": "default",  # for its PLAY RECAP
        "ANSIBLE_PYTHON_INTERPRETER": PYTHON,
        "ANSIBLE_REMOTE_TMP": "/srv/.ansible-tmp",  # private to each lab host, unlike /root
    }
    deploy = doc["children"]["app"]["vars"]["deploy"]
    built = lab.work / "artifacts"
    built.mkdir()
    artifacts = {ref: from_git(str(deploy["repo"]), ref, built) for ref in REFS}
    return Fleet(lab, doc["vars"], deploy, doc.get("hosts") or {}, env, ansible, artifacts)


def register_targets(fleet: Fleet, hosts: int) -> None:
    """Put the first ``hosts`` instances in the lab's target group (the lab has only its app
    hosts there), so the ELB row can deregister and register every one of them."""
    names = fleet.names(hosts)
    aws_vars = fleet.host_vars[names[0]]["aws"]
    opskit.aws.client("elbv2", aws_vars).register_targets(
        TargetGroupArn=fleet.deploy["target_group_arn"],
        Targets=[{"Id": fleet.host_vars[n]["aws"]["instance_id"]} for n in names],
    )


# ---------------------------------------------------------------- the tools


@dataclass(frozen=True)
class Check:
    """What a run did: the tool's own report, then what the hosts serve over HTTP."""

    ok: int  # hosts the tool reported deployed
    why: str = ""  # the first problem, "" when there was none
    release: str = ""
    inner: float | None = None  # opskit's own deploy time (its JSON `duration`)
    host_median: float | None = None  # median of opskit's per-host durations
    serving: int = 0  # hosts answering GET / with the new release
    lag: float | None = None  # seconds after the tool exited until the last one did


@dataclass(frozen=True)
class Variant:
    name: str
    tool: str  # "opskit" or "Ansible"
    hosts: int
    main: bool  # a main row (opskit vs Ansible) or one for information
    command: Callable[[str], tuple[list[str], dict[str, str], str]]  # ref -> argv, env,
    # the release id when it is chosen before the run ("" when the tool reports it)
    check: Callable[[Done, str], Check]
    missing: str = ""  # why the tool cannot run at all ("" when it can)


def opskit_argv(fleet: Fleet, inventory: Path, hosts: int, ref: str, batch: str) -> list[str]:
    return [program("opskit") or "opskit", "-i", str(inventory), "deploy", "--ref", ref,
            "--batch", batch, "--yes", "--json", "-f", str(hosts), "-l", "app"]


def opskit_variant(fleet: Fleet, hosts: int, name: str, batch: str = "100%", elb: bool = False,
                   main: bool = True) -> Variant:
    inventory = fleet.inventory(hosts, elb)
    names = fleet.names(hosts)
    return Variant(
        name, "opskit", hosts, main,
        lambda ref: (opskit_argv(fleet, inventory, hosts, ref, batch), fleet.env, ""),
        lambda done, _release: opskit_check(done, names),
        "" if program("opskit") else "opskit not on PATH",
    )


def opskit_check(done: Done, names: Sequence[str]) -> Check:
    try:
        doc = json.loads(done.out)
    except json.JSONDecodeError:
        return Check(0, f"exit {done.rc}, no JSON: {last_line(done.err)}")
    release = doc.get("artifact", {}).get("release", "")
    hosts = doc.get("hosts", [])
    ok = {h["host"] for h in hosts
          if h["status"] == "ok" and (h.get("deploy") or {}).get("current") == release}
    bad = [h for h in hosts if h["host"] not in ok]
    why = f"{bad[0]['host']}: {bad[0]['status']} {bad[0].get('error') or ''}".strip() if bad else ""
    if done.rc != 0:
        why = f"exit {done.rc}; {why or last_line(done.err)}"
    durations = [h["duration"] for h in hosts if h.get("duration") is not None]
    return Check(len(ok & set(names)), why, release, doc.get("duration"),
                 statistics.median(durations) if durations else None)


def playbook_tasks() -> int:
    return len(yaml.safe_load(PLAYBOOK.read_text())[0]["tasks"])


def ansible_variant(fleet: Fleet, hosts: int, name: str, main: bool = True) -> Variant:
    exe = program("ansible-playbook")
    inventory = fleet.inventory(hosts)
    names = fleet.names(hosts)

    def command(ref: str) -> tuple[list[str], dict[str, str], str]:
        art = fleet.artifacts[ref]
        release = release_id(art.revision)  # as opskit names releases: they sort by age
        extra = json.dumps({"release": release, "artifact": str(art.path)})
        return ([exe or "ansible-playbook", "-i", str(inventory), "-f", str(hosts),
                 str(PLAYBOOK), "-e", extra], fleet.ansible, release)

    return Variant(name, "Ansible", hosts, main, command,
                   lambda done, release: ansible_check(done, release, names),
                   "" if exe else "ansible-playbook not installed (pip install -e '.[bench]')")


RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)",
                   re.MULTILINE)


def ansible_check(done: Done, release: str, names: Sequence[str]) -> Check:
    tasks = playbook_tasks()
    ok = {h for h, n, unreachable, failed in RECAP.findall(done.out)
          if int(n) == tasks and unreachable == "0" and failed == "0"}
    problems = [line.strip() for line in done.out.splitlines()
                if line.startswith(("fatal:", "failed:")) or "UNREACHABLE!" in line]
    why = problems[0][:300] if problems else ""
    if done.rc != 0:
        why = f"exit {done.rc}; {why or last_line(done.err or done.out)[:300]}"
    elif not RECAP.search(done.out):
        why = "no PLAY RECAP in the output"
    return Check(len(ok & set(names)), why, release)


# ---------------------------------------------------------------- serving the release


def serving(urls: dict[str, str], release: str, since: float) -> tuple[int, float | None, str]:
    """(hosts answering GET / with ``release``, seconds after ``since`` until the last one
    did, the first host that did not and what it served), polling until SERVE_TIMEOUT."""
    deadline = since + SERVE_TIMEOUT
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        polled = dict(zip(urls, pool.map(lambda u: _poll(u, release, deadline), urls.values()),
                          strict=True))
    served = [when for when, _seen in polled.values() if when is not None]
    lag = max(served) - since if len(served) == len(urls) else None
    bad = next((f"{n} served {seen} (not {release}) {SERVE_TIMEOUT:g} s after the run"
                for n, (when, seen) in polled.items() if when is None), "")
    return len(served), lag, bad


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _poll(url: str, release: str, deadline: float) -> tuple[float | None, str]:
    seen = "nothing"
    while True:
        try:
            with _OPENER.open(url, timeout=2) as resp:
                seen = str(json.loads(resp.read()).get("release"))
        except (OSError, ValueError) as exc:
            seen = f"no answer ({exc})"
        if seen == release:
            return time.monotonic(), seen
        if time.monotonic() > deadline:
            return None, seen
        time.sleep(0.05)


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Attempt:
    cost: Cost
    check: Check
    app_cpu: float  # CPU-s of the lab's gunicorns (workers replaced) during the run

    @property
    def seconds(self) -> float:
        return self.cost.seconds

    @property
    def other_cpu(self) -> float:
        """The machine's CPU-s beyond the tool, the sshds and the gunicorns."""
        return max(0.0, self.cost.other_cpu - self.app_cpu)


@dataclass
class Row:
    variant: Variant
    runs: list[Attempt] = field(default_factory=list)  # timed runs, warm-up excluded
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure and bool(self.runs)

    def median(self, key: Callable[[Attempt], float | None]) -> float | None:
        values = [v for v in map(key, self.runs) if v is not None]
        return statistics.median(values) if values else None

    @property
    def seconds(self) -> float | None:
        return self.median(lambda a: a.seconds) if self.ok else None


def attempt(variant: Variant, fleet: Fleet, ref: str) -> Attempt:
    argv, env, planned = variant.command(ref)
    meter = Meter(fleet.lab.sshd_pids)
    app0 = fleet.app_cpu()
    done = run_tool(argv, env)
    meter.lap()
    check = variant.check(done, planned)
    if check.release and check.ok:
        n, lag, bad = serving(fleet.app_urls(variant.hosts), check.release,
                              meter.ended or time.monotonic())
        check = replace(check, serving=n, lag=lag, why=check.why or bad)
    cost = meter.finish()
    return Attempt(cost, check, fleet.app_cpu() - app0)


def shortfall(check: Check, hosts: int) -> str:
    """"" when the run reached every host, else what it missed and why."""
    if check.ok == hosts and check.serving == hosts and not check.why:
        return ""
    return (f"reached {min(check.ok, check.serving)}/{hosts} hosts (tool: {check.ok} ok, "
            f"serving the release: {check.serving}): {(check.why or 'no error shown')[:300]}")


def measure(variants: Sequence[Variant], fleet: Fleet, repeat: int, refs: Iterator[str]
            ) -> list[Row]:
    """One warm-up, then ``repeat`` rounds of every variant in turn; each run a new release."""
    rows = [Row(v, failure=v.missing) for v in variants]

    def once(row: Row, label: str) -> tuple[Attempt, str]:
        one = attempt(row.variant, fleet, next(refs))
        _log(row.variant, label, one)
        return one, shortfall(one.check, row.variant.hosts)

    take_rounds(rows, repeat, once)
    return rows


def _log(v: Variant, label: str, one: Attempt) -> None:
    c = one.check
    print(f"{v.name:44} {v.hosts:3} {label:12} {one.seconds:7.2f} s  ok {c.ok}/{v.hosts}  "
          f"serving {c.serving}/{v.hosts} (+{fmt(c.lag)} s)  client {one.cost.client_cpu:5.2f}"
          f"  sshd {one.cost.server_cpu:5.2f}  app {one.app_cpu:5.2f} CPU-s", file=sys.stderr,
          flush=True)


def first_deploy(fleet: Fleet, hosts: int) -> Attempt:
    """opskit deploy of v1 to every host: starts gunicorn everywhere (`deploy.start`)."""
    variant = opskit_variant(fleet, hosts, "first deploy (starts gunicorn)")
    one = attempt(variant, fleet, REFS[0])
    _log(variant, "setup", one)
    short = shortfall(one.check, hosts)
    if short:
        raise RuntimeError(f"the first deploy (v1 to {hosts} hosts) failed: {short}")
    return one


# ---------------------------------------------------------------- the profile


@dataclass(frozen=True)
class Profile:
    hosts: int
    wall: float  # the whole command, as the bench saw it
    phases: dict[str, float]  # imports, build, deploy, total (inside the process)
    steps: dict[str, list[dict[str, Any]]]  # per host, the steps in order
    durations: dict[str, float]  # per host, as opskit reports it
    health_wait: list[float]  # per host, the health check's own polling time
    python_cpu: tuple[float, float]  # CPU-s of `python3 -c pass`, and of the health probe's imports
    failure: str = ""


def profile(fleet: Fleet, hosts: int, ref: str) -> Profile:
    """One opskit deploy (one batch) under bench/deploy_profile.py."""
    out = fleet.lab.work / "profile.json"
    argv = [sys.executable, str(PROFILER), str(out),
            *opskit_argv(fleet, fleet.inventory(hosts), hosts, ref, "100%")[1:]]
    t0 = time.perf_counter()
    done = run_tool(argv, fleet.env)
    wall = time.perf_counter() - t0
    check = opskit_check(done, fleet.names(hosts))
    try:
        doc, hosts_doc = json.loads(out.read_text()), json.loads(done.out)["hosts"]
    except (OSError, ValueError, KeyError) as exc:
        return Profile(hosts, wall, {}, {}, {}, [], (0.0, 0.0),
                       f"no profile: {exc}; {check.why}")
    failure = "" if check.ok == hosts and not check.why else f"{check.ok}/{hosts} ok: {check.why}"
    waits = [float(h["deploy"]["health"].get("seconds") or 0.0) for h in hosts_doc
             if (h.get("deploy") or {}).get("health")]
    python = (python_cpu("pass", fleet.env), python_cpu("import json, socket", fleet.env))
    return Profile(hosts, wall, doc["phases"], doc["hosts"],
                   {h["host"]: h["duration"] for h in hosts_doc}, waits, python, failure)


def python_cpu(code: str, env: dict[str, str]) -> float:
    """Median CPU-s of ``python3 -c CODE`` here (lab hosts share this machine's python3)."""
    used = []
    for _ in range(5):
        before = children_cpu()
        run_tool([PYTHON, "-c", code], env)
        used.append(children_cpu() - before)
    return statistics.median(used)


def _ansible_connections(connections: tuple[float, float] | str) -> str:
    if isinstance(connections, str):
        return f"Ansible's connections: {connections}"
    ssh, sftp = connections
    return (f"the playbook started {ssh:g} `ssh` and {sftp:g} `sftp` per host: "
            f"{ssh + sftp:g} SSH connections, each with its handshake and a shell on the host")


def _by_step(p: Profile) -> dict[str, list[dict[str, Any]]]:
    per_step: dict[str, list[dict[str, Any]]] = {}
    for events in p.steps.values():
        for e in events:
            per_step.setdefault(e["step"], []).append(e)
    return per_step


def profile_table(p: Profile) -> list[str]:
    per_step = _by_step(p)
    host_total = sum(p.durations.values()) or 1.0
    out = ["| step | remote commands per host | of them with the artifact on stdin | median s | "
           "max s | share of host time |", "|---|---:|---:|---:|---:|---:|"]
    accounted = 0.0
    for step in PROFILE_STEPS:
        events = per_step.get(step)
        if not events:
            continue
        secs = [e["seconds"] for e in events]
        accounted += sum(secs)
        commands = statistics.median(_per_host(p, step, "commands"))
        uploads = statistics.median(_per_host(p, step, "uploads"))
        out.append(f"| {step} | {commands:g} | {uploads:g} | {statistics.median(secs):.3f} | "
                   f"{max(secs):.3f} | {100 * sum(secs) / host_total:.0f}% |")
    rest = [p.durations[h] - sum(e["seconds"] for e in p.steps.get(h, [])) for h in p.durations]
    out.append(f"| rest (closing, scheduling) | – | – | {statistics.median(rest):.3f} | "
               f"{max(rest):.3f} | {100 * (host_total - accounted) / host_total:.0f}% |")
    return out


def _per_host(p: Profile, step: str, what: str) -> list[int]:
    return [sum(e[what] for e in events if e["step"] == step) for events in p.steps.values()]


def profile_lines(p: Profile, connections: tuple[float, float] | str) -> list[str]:
    if p.failure or not p.steps:
        return [f"The profiled deploy failed: {p.failure}"]
    ph = p.phases
    start = p.wall - ph["total"] + ph["imports"]
    rest = ph["total"] - ph["imports"] - ph.get("build", 0.0) - ph.get("deploy", 0.0)
    commands = statistics.median(sum(e["commands"] for e in ev) for ev in p.steps.values())
    uploads = statistics.median(sum(e["uploads"] for e in ev) for ev in p.steps.values())
    durations = sorted(p.durations.values())
    lines = [
        f"One `opskit deploy --batch 100% -f {p.hosts}` to {p.hosts} hosts run under "
        "`bench/deploy_profile.py` (opskit's CLI in-process, its connect, deploy steps and "
        "`Session.run`/`Session.run_input` wrapped to time and count them; opskit unchanged). "
        f"Wall {p.wall:.2f} s: interpreter start and imports {start:.2f} s, artifact build "
        f"(`git archive`, sha256) {ph.get('build', 0.0):.2f} s, the hosts "
        f"{ph.get('deploy', 0.0):.2f} s, the rest (options, inventory, settings, JSON output) "
        f"{rest:.2f} s.",
        "",
        f"Per host: one SSH connection, {commands:g} remote commands (each its own exec "
        f"channel: a shell sshd starts; {uploads:g} of them receives the artifact on its stdin), "
        f"one after the other ({_ansible_connections(connections)}). "
        f"Host durations {durations[0]:.2f}–{durations[-1]:.2f} s (median "
        f"{statistics.median(durations):.2f}); all hosts run at once (`-f {p.hosts}`), so the "
        "deploy takes as long as the slowest host.",
        "",
        *profile_table(p),
        "",
    ]
    if p.health_wait:
        lines.append(
            f"Of the health step, waiting for the new workers to answer with the new release "
            f"took {statistics.median(p.health_wait):.2f} s (median; the check's own polling "
            f"time, max {max(p.health_wait):.2f}); the rest of it is the round trip and "
            f"starting `python3 -I -S` on the host ({p.python_cpu[1]:.3f} CPU-s with the "
            f"probe's imports on this machine, against {p.python_cpu[0]:.3f} for a bare "
            "`python3`) while every host's new gunicorn workers boot at the same time.")
    return lines


def ansible_connections(fleet: Fleet, hosts: int, ref: str) -> tuple[float, float] | str:
    """(ssh, sftp) programs Ansible starts per host for one deploy (an untimed extra run
    through logging wrappers), or why it could not be counted."""
    log = fleet.lab.work / "ansible-connections.log"
    env = dict(fleet.ansible)
    for tool in ("ssh", "sftp"):
        real = program(tool)
        if not real:
            return f"{tool} not found"
        wrapper = fleet.lab.work / f"counting-{tool}"
        wrapper.write_text(f'#!/bin/sh\necho {tool} >> "{log}"\nexec "{real}" "$@"\n')
        wrapper.chmod(0o755)
        env[f"ANSIBLE_{tool.upper()}_EXECUTABLE"] = str(wrapper)
    variant = ansible_variant(fleet, hosts, "Ansible playbook, counting connections")
    argv, _env, release = variant.command(ref)
    check = variant.check(run_tool(argv, env), release)
    if check.ok != hosts or check.why:
        return f"the counting run failed: {check.why}"
    started = log.read_text().split()
    return started.count("ssh") / hosts, started.count("sftp") / hosts


# ---------------------------------------------------------------- the report


def anchor(rows: Sequence[Row], hosts: int) -> Row | None:
    """The opskit main row of this size: what the ratios are taken against."""
    return next((r for r in rows if r.variant.hosts == hosts and r.variant.main
                 and r.variant.tool == "opskit"), None)


def _ratio(row: Row, base: Row | None) -> str:
    mine, theirs = row.seconds, base.seconds if base else None
    return "–" if mine is None or not theirs else f"{mine / theirs:.2f}×"


def figures_table(rows: Sequence[Row]) -> list[str]:
    out = ["| tool | hosts | median s | min s | ratio to opskit |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        name = row.variant.name + ("" if row.variant.main else " *(info)*")
        if not row.ok:
            out.append(f"| {name} | {row.variant.hosts} | failed | – | – |")
            continue
        best = min(a.seconds for a in row.runs)
        out.append(f"| {name} | {row.variant.hosts} | {fmt(row.seconds)} | {best:.2f} | "
                   f"{_ratio(row, anchor(rows, row.variant.hosts))} |")
    failed = [f"- **{r.variant.name}, {r.variant.hosts} hosts** failed: {r.failure}"
              for r in rows if not r.ok]
    return out + ([""] + failed if failed else [])


def cpu_table(rows: Sequence[Row], cores: int) -> list[str]:
    out = ["| tool | hosts | client CPU-s | lab sshd CPU-s | sshd CPU-s per host | "
           f"CPU floor on {cores} cores, s | median wall s | gunicorn CPU-s | other CPU-s | "
           "steal s | all serving +s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in (r for r in rows if r.ok):
        client = row.median(lambda a: a.cost.client_cpu) or 0.0
        server = row.median(lambda a: a.cost.server_cpu) or 0.0
        out.append(f"| {row.variant.name} | {row.variant.hosts} | {client:.2f} | {server:.2f} | "
                   f"{server / row.variant.hosts:.3f} | {(client + server) / cores:.2f} | "
                   f"{fmt(row.seconds)} | {fmt(row.median(lambda a: a.app_cpu))} | "
                   f"{fmt(row.median(lambda a: a.other_cpu))} | "
                   f"{fmt(row.median(lambda a: a.cost.steal))} | "
                   f"{fmt(row.median(lambda a: a.check.lag))} |")
    return out


def _find(rows: Sequence[Row], hosts: int, tool: str, main: bool = True,
          name: str = "") -> Row | None:
    return next((r for r in rows if r.ok and r.variant.hosts == hosts and r.variant.tool == tool
                 and r.variant.main == main and name in r.variant.name), None)


def reading(rows: Sequence[Row], sizes: Sequence[int], first: Attempt) -> list[str]:
    lines = []
    small = min(sizes)
    base = _find(rows, small, "opskit")
    if base and base.seconds is not None:
        verdict = "met" if base.seconds <= GOAL_SECONDS else "not met"
        lines.append(
            f"- **\"{small} hosts in a few seconds\"** (taken as ≤ {GOAL_SECONDS:g} s): "
            f"{verdict}: opskit deployed {small} hosts in {base.seconds:.2f} s median "
            f"(min {min(a.seconds for a in base.runs):.2f} s), health-checked, with the new "
            f"release served everywhere. {_saturation(base)} The very first deploy, which also "
            f"starts gunicorn on every host, took {first.seconds:.2f} s for {first.check.ok} "
            "hosts.")
    for hosts in sizes:
        ours, theirs = _find(rows, hosts, "opskit"), _find(rows, hosts, "Ansible")
        if ours and theirs and ours.seconds and theirs.seconds:
            ratio = theirs.seconds / ours.seconds
            verdict = ("met" if ratio >= GOAL_RATIO
                       else f"not met (short by {GOAL_RATIO / ratio:.2f}×)")
            lines.append(f"- **≥ {GOAL_RATIO:g}× faster than Ansible**, {hosts} hosts: {verdict}:"
                         f" Ansible {theirs.seconds:.2f} s against opskit {ours.seconds:.2f} s, "
                         f"{ratio:.2f}×.")
    lines += _cost_lines(rows, sizes)
    lines += _info_lines(rows, sizes)
    return lines


def _saturation(row: Row) -> str:
    """How much of the machine a row's runs took, in seconds of all cores."""
    cores = os.cpu_count() or 1
    own = row.median(lambda a: a.cost.client_cpu + a.cost.server_cpu) or 0.0
    app = row.median(lambda a: a.app_cpu) or 0.0
    return (f"Its own work (client, and the sshds with the commands they ran) took {own:.1f} "
            f"CPU-s and the gunicorn worker restarts {app:.1f}: {(own + app) / cores:.2f} s of "
            f"all {cores} cores.")


def _cost_lines(rows: Sequence[Row], sizes: Sequence[int]) -> list[str]:
    lines = []
    cores = os.cpu_count() or 1
    for hosts in sizes:
        for row in (r for r in (_find(rows, hosts, "opskit"), _find(rows, hosts, "Ansible")) if r):
            client = row.median(lambda a: a.cost.client_cpu) or 0.0
            server = row.median(lambda a: a.cost.server_cpu) or 0.0
            busy = row.median(lambda a: max(a.cost.machine_cpu,
                                            a.cost.client_cpu + a.cost.server_cpu)) or 0.0
            lines.append(
                f"- {row.variant.name}, {hosts} hosts: {client:.2f} CPU-s in the tool, "
                f"{server:.2f} in the lab sshds and the commands they ran "
                f"({server / hosts:.3f} per host), {fmt(row.median(lambda a: a.app_cpu))} in "
                f"gunicorn; the machine was busy "
                f"{min(1.0, busy / cores / (row.seconds or 1)):.0%} of the "
                f"{row.seconds or 0:.2f} s on {cores} cores.")
    for tool in ("opskit", "Ansible"):
        found = [r for r in (_find(rows, h, tool) for h in sizes) if r and r.seconds]
        for a, b in itertools.pairwise(found):
            grow = (b.seconds or 0) / (a.seconds or 1)
            hosts = b.variant.hosts / a.variant.hosts
            per_host = (f"; per-host time (median of opskit's per-host `duration`) "
                        f"{fmt(a.median(lambda x: x.check.host_median))} → "
                        f"{fmt(b.median(lambda x: x.check.host_median))} s"
                        if tool == "opskit" else "")
            lines.append(f"- {tool} from {a.variant.hosts} to {b.variant.hosts} hosts "
                         f"({hosts:.1f}× the hosts): {a.seconds:.2f} → {b.seconds:.2f} s "
                         f"({grow:.2f}×){per_host}.")
    return lines


def _info_lines(rows: Sequence[Row], sizes: Sequence[int]) -> list[str]:
    lines = []
    for what, name, why in (
        (f"Default canary batches (`--batch {CANARY}`)", CANARY,
         "each batch waits for its slowest host and its health gate"),
        ("With ELB rotation (moto)", "ELB", "deregister, wait for draining, register, wait "
         "for healthy: AWS API calls per host, and moto's CPU"),
    ):
        for hosts in sizes:
            base, info = _find(rows, hosts, "opskit"), _find(rows, hosts, "opskit", False, name)
            if base and info and base.seconds and info.seconds:
                lines.append(f"- {what}, {hosts} hosts: {info.seconds:.2f} s, "
                             f"{info.seconds / base.seconds:.2f}× one batch without ELB "
                             f"({why}).")
    ansible = [r for r in rows if r.ok and r.variant.tool == "Ansible" and r.variant.main]
    lags = [lag for r in ansible for lag in [r.median(lambda a: a.check.lag)] if lag is not None]
    if lags:
        lines.append(f"- After Ansible returned, the last host served the new release "
                     f"{min(lags):.2f}–{max(lags):.2f} s later (median per size): the playbook "
                     "does not wait for the new workers; opskit's time includes that wait (its "
                     "health check).")
    return lines


def caveats(hosts: int, cores: int) -> str:
    return f"""\
- Both tools check host keys against the lab's known_hosts (Ansible:
  `ANSIBLE_HOST_KEY_CHECKING=True`, `ansible_ssh_common_args`) and open fresh SSH connections
  every run (Ansible: `ANSIBLE_SSH_ARGS=-o ControlMaster=no`; its default ControlPersist would
  let later runs reuse master connections). opskit uses one connection per host for all its
  steps; Ansible opens several per task and host (see the profile section for the count).
- opskit does more than the playbook: sha256 check of the upload, REVISION, shared dirs,
  a health check per host that waits for the new release to answer, pruning, rollback on
  failure. The playbook does the bare steps and returns right after the HUP.
  Ansible gets `ansible_python_interpreter=/usr/bin/python3` (no interpreter discovery) and
  `gather_facts: false`: its fastest setup, not its default.
- Every run deploys a new release (a new id; v1 and v2 alternate). A run counts only when
  the tool reported every host done *and* every host answered `GET /` with the new release
  id within {SERVE_TIMEOUT:g} s after the tool exited ("all serving +s" is when the last one
  did).
- Everything runs on one machine: the tool, {hosts} sshds, {hosts} gunicorn masters with 2
  workers each, moto. Connections go over loopback (no network latency), so these are mostly
  CPU costs on {cores} cores; any other load on the machine shows up as "other CPU-s" (moto's
  work included; the gunicorns have their own column). Lab hosts get a stock root
  `.bashrc` (opskit/lab/hosts.py), so no remote command pays for the operator's shell setup.
- Client CPU is the tool's processes (all its children: Ansible's forks and `ssh`
  processes); sshd CPU is the lab's sshd listeners with every child they reaped, i.e. the
  remote commands too (shells, `tar`, `python3`, Ansible's modules).
- A row whose runs did not all reach every host is shown as failed with the reason; no time
  is reported for it."""


@dataclass(frozen=True)
class Extras:
    """What the report says beyond the rows."""

    first: Attempt  # the first deploy (starts gunicorn)
    profile: Profile | None
    connections: tuple[float, float] | str  # Ansible's (ssh, sftp) per host, or why not


def report(rows: Sequence[Row], args: argparse.Namespace, extras: Extras,
           facts: list[tuple[str, str]], started: datetime) -> str:
    sizes, prof = args.sizes, extras.profile
    cores = os.cpu_count() or 1
    parts = [
        f"## Deploy: `opskit deploy` against an Ansible playbook, {' and '.join(map(str, sizes))}"
        " hosts",
        "",
        f"Wall time to deploy a new release of the lab's sample app (gunicorn, 2 workers per "
        f"host) to the first N hosts of a {max(sizes)}-host lab fleet (real `sshd -D` on "
        f"127.10.0.1–{max(sizes)}, port {args.port}, from `opskit lab up` in a temp state dir), "
        "each tool in the same run on the same machine. Every host of the benchmark's "
        "inventory is in group `app` with the lab's `deploy:` settings (without "
        "`target_group_arn` except in the ELB row). A first opskit deploy (v1, all hosts) "
        "started gunicorn everywhere; then per size each tool had one warm-up run and "
        f"{args.repeat} timed runs, in rounds (every tool once per round).",
        "",
        "Commands (`INV` = the inventory of the first N hosts, `N` = the host count, `REF` "
        "alternating `v1`/`v2`):",
        "",
        "- opskit: `opskit -i INV deploy --ref REF --batch 100% --yes --json -f N -l app`; for "
        f"information also `--batch {CANARY}` (its default: a canary, then 25% at a time) and, at "
        f"{min(sizes)} hosts, with the ELB target group (deregister, drain, register, healthy "
        "on the lab's moto server)",
        "- Ansible: `ansible-playbook -i INV -f N bench/deploy_playbook.yml -e "
        "'{\"release\": ID, \"artifact\": \"REF.tar.gz\"}'` with `ANSIBLE_PIPELINING=True`, "
        "`ANSIBLE_HOST_KEY_CHECKING=True`, `ANSIBLE_SSH_ARGS='-o ControlMaster=no'`, "
        "`ansible_python_interpreter=/usr/bin/python3`; the playbook (`gather_facts: false`): "
        "`file` (release dir), `unarchive` (the `git archive --format=tar.gz` of REF, copied "
        "from the controller), `copy content=` (RELEASE), `file state=link force=true` "
        "(`current`), `shell: kill -HUP $(cat PID_FILE)`",
        "",
        *figures_table(rows),
        "",
        "Ratios are median over median against the opskit `--batch 100%` row of the same host "
        "count: above 1 is slower than opskit. *(info)* rows are not part of the comparison.",
        "",
        "### CPU per run (medians)",
        "",
        *cpu_table(rows, cores),
        "",
        f"### Where opskit's time goes ({prof.hosts if prof else min(sizes)} hosts)",
        "",
        *(profile_lines(prof, extras.connections) if prof
          else ["Not profiled (`--no-profile`)."]),
        "",
        "### Reading",
        "",
        *reading(rows, sizes, extras.first),
        "",
        "How to read them:",
        "",
        caveats(max(sizes), cores),
        "",
        "### Machine",
        "",
        *(f"- {k}: {v}" for k, v in facts),
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        "",
        "### Reproduce",
        "",
        "```",
        "make bench    # as root: pip install -e '.[bench]' into .venv, then bench/fanout.py "
        "and bench/deploy.py",
        f"# options: .venv/bin/python bench/deploy.py --sizes {','.join(map(str, sizes))} "
        f"--repeat {args.repeat} --port {args.port}",
        "```",
        "",
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------- main


def source_state() -> str:
    """The commit opskit runs from, and whether opskit/ differs from it (read-only git)."""
    git = ["git", "-C", str(HERE.parent)]
    head = run_tool([*git, "rev-parse", "--short", "HEAD"], dict(os.environ))
    if head.rc != 0:
        return "not a git checkout"
    changed = run_tool([*git, "diff", "--quiet", "HEAD", "--", "opskit"], dict(os.environ)).rc
    new = run_tool([*git, "ls-files", "--others", "--exclude-standard", "--", "opskit"],
                   dict(os.environ)).out.split()
    dirty = [what for what, yes in (("changed", changed != 0), (f"{len(new)} new", bool(new)))
             if yes]
    return f"git {head.out.strip()}" + (f" + uncommitted opskit/ files ({', '.join(dirty)})"
                                        if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="25,50",
                        help="host counts to measure, comma-separated (default 25,50)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per row (default 3)")
    parser.add_argument("--port", type=int, default=2522, help="lab sshd port (default 2522)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled deploy")
    parser.add_argument("--out", type=Path, default=REPORT,
                        help="report whose deploy section to (re)write "
                        "(default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error("--sizes: comma-separated host counts, e.g. 25,50")
    if not args.sizes or args.sizes[0] < 1 or args.repeat < 1:
        parser.error("--sizes and --repeat must be at least 1")
    return args


def variants(fleet: Fleet, hosts: int, smallest: bool) -> list[Variant]:
    found = [
        opskit_variant(fleet, hosts, "opskit deploy --batch 100%"),
        ansible_variant(fleet, hosts, "Ansible playbook"),
        opskit_variant(fleet, hosts, f"opskit deploy --batch {CANARY}", batch=CANARY,
                       main=False),
    ]
    if smallest:
        found.append(opskit_variant(fleet, hosts, "opskit deploy --batch 100%, with ELB",
                                    elb=True, main=False))
    return found


def bench(args: argparse.Namespace, root: Path) -> None:
    started = datetime.now(timezone.utc)
    hosts, small = max(args.sizes), min(args.sizes)
    lab = lab_up(hosts, args.port, root)
    background = background_load(lab.sshd_pids)
    fleet = make_fleet(lab)
    register_targets(fleet, small)
    first = first_deploy(fleet, hosts)
    refs = itertools.cycle(REFS[1:] + REFS[:1])  # v2 first: the first deploy was v1
    rows: list[Row] = []
    prof: Profile | None = None
    conns: tuple[float, float] | str = "not counted"
    for size in args.sizes:
        rows += measure(variants(fleet, size, size == small), fleet, args.repeat, refs)
        if size == small and not args.no_profile:
            prof = profile(fleet, size, next(refs))
            conns = ansible_connections(fleet, size, next(refs))
    extra = [("opskit source", source_state()), ("gunicorn", dist_version("gunicorn")),
             ("moto", dist_version("moto"))]
    facts = machine(fleet.env, fleet.ansible, background, extra)
    startup = startup_time(fleet.env)
    facts.append(("`opskit --version`", f"{fmt(startup)} s (interpreter start and imports)"))
    write_section(args.out, report(rows, args, Extras(first, prof, conns), facts, started))
    print(f"wrote the deploy section of {args.out}", file=sys.stderr)
    print("\n".join(figures_table(rows)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    root = Path(tempfile.mkdtemp(prefix="opskit-bench-deploy-"))
    try:
        bench(args, root)
    except OpskitError as exc:
        print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""),
              file=sys.stderr)
        return 1
    finally:
        lab_down(root / "lab", root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
