"""Fan-out benchmark: wall time of ``true`` on every lab host, opskit against its anchors.

Brings up its own lab (temp state dir, own port, so the developer lab on 2222 and the test
lab on 2322 are untouched), times opskit, the OpenSSH client (``xargs -P``), parallel-ssh
and Ansible on the same hosts in the same run, writes its section of docs/benchmarks.md
(bench/common.py keeps the other sections) and downs the lab.
Run it with ``make bench`` (as root). No pass/fail thresholds: it reports, it never asserts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from common import (
    REPORT,
    Done,
    Lab,
    ansible_env,
    background_load,
    dist_version,
    fmt,
    lab_down,
    lab_up,
    last_line,
    machine,
    metered_run,
    program,
    startup_time,
    take_rounds,
    terminate,
    write_section,
)

from opskit.errors import OpskitError

HERE = Path(__file__).resolve().parent
BOUNDED_FORKS = 10
# The key exchange paramiko (opskit) and libssh2 (parallel-ssh) end up with against this sshd;
# an extra OpenSSH row forces it, to compare like with like (see the report's caveats).
CURVE25519 = "curve25519-sha256"
FABRIC_ROW = "Fabric ThreadingGroup (plain)"
# Issue 9's goals: opskit's wall <= 1.25 x OpenSSH's, >= 1.5 x faster than Ansible, client
# CPU per host <= the OpenSSH client's.
GOAL_VS_OPENSSH, GOAL_VS_ANSIBLE = 1.25, 1.5


@dataclass(frozen=True)
class Tally:
    """What a run reached: hosts where ``true`` exited 0, and why some did not."""

    reached: int
    why: str = ""
    inner: float | None = None  # the tool's own fan-out time, when it reports one


@dataclass(frozen=True)
class Tool:
    name: str
    argv: list[str]
    env: dict[str, str]
    tally: Callable[[Done], Tally]
    missing: str = ""  # why the tool cannot run at all ("" when it can)


@dataclass(frozen=True)
class Attempt:
    seconds: float
    client_cpu: float  # CPU-s of the tool's processes (user + sys, children reaped)
    server_cpu: float  # CPU-s of the lab sshds during the run
    machine_cpu: float  # CPU-s of the whole machine (all cores, /proc/stat) during the run
    steal: float  # seconds the hypervisor gave our vCPUs to someone else during the run
    tally: Tally
    peak_rss_mib: float = 0.0  # VmHWM of the tool's own process

    @property
    def other_cpu(self) -> float:
        """CPU-s neither the tool nor the sshds used: kernel network work, other processes."""
        return max(0.0, self.machine_cpu - self.client_cpu - self.server_cpu)


@dataclass
class Row:
    tool: Tool
    runs: list[Attempt] = field(default_factory=list)  # timed runs, warm-up excluded
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure and bool(self.runs)

    def median(self, key: Callable[[Attempt], float | None]) -> float | None:
        values = [v for v in map(key, self.runs) if v is not None]
        return statistics.median(values) if values else None


# ---------------------------------------------------------------- the tools


def opskit_tool(lab: Lab, env: dict[str, str], forks: int) -> Tool:
    exe = program("opskit")
    argv = [exe or "opskit", "-i", str(lab.inventory), "exec", "--yes", "--json",
            "-f", str(forks), "--", "true"]
    return Tool(f"opskit -f {forks}", argv, env, lambda d: _opskit_tally(d, lab),
                "" if exe else "opskit not on PATH")


def _opskit_tally(done: Done, lab: Lab) -> Tally:
    try:
        doc = json.loads(done.out)
    except json.JSONDecodeError:
        return Tally(0, f"exit {done.rc}, no JSON: {last_line(done.err)}")
    ok = {h["host"] for h in doc.get("hosts", []) if h["status"] == "ok" and h["exit_status"] == 0}
    bad = [h for h in doc.get("hosts", []) if h["host"] not in ok]
    why = f"{bad[0]['host']}: {bad[0]['status']} {bad[0].get('error') or ''}".strip() if bad else ""
    if done.rc != 0:
        why = f"exit {done.rc}; {why or last_line(done.err)}"
    return Tally(len(ok & set(lab.names)), why, doc.get("duration"))


def openssh_tool(lab: Lab, env: dict[str, str], procs: int, kex: str = "") -> Tool:
    """``kex``: force this key exchange (by default OpenSSH 9 picks sntrup761x25519)."""
    ssh, xargs = shutil.which("ssh"), shutil.which("xargs")
    # Input: one address a line. Each job: ssh ... root@ADDR true, then "ok ADDR" on success
    # (the tiny `sh -c` wrapper is what lets us count the hosts reached).
    extra = ["-o", f"KexAlgorithms={kex}"] if kex else []
    ssh_argv = [ssh or "ssh", "-i", str(lab.key), "-o", f"UserKnownHostsFile={lab.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", *extra,
                "-p", str(lab.port), "root@{}", "true"]
    script = '"$@" && echo "ok $0"'
    argv = [xargs or "xargs", "-a", str(_address_file(lab)), "-P", str(procs), "-I{}",
            "sh", "-c", script, "{}", *ssh_argv]
    missing = "" if ssh and xargs else "ssh or xargs not found (apt-get install openssh-client)"
    name = f"OpenSSH xargs -P {procs}" + (f", {kex.split('-')[0]} kex" if kex else "")
    return Tool(name, argv, env,
                lambda d: _lines_tally(d, r"ok (\S+)", lab.addresses), missing)


def _address_file(lab: Lab) -> Path:
    path = lab.work / "addresses.txt"
    path.write_text("".join(f"{a}\n" for a in lab.addresses))
    return path


def _lines_tally(done: Done, pattern: str, known: Sequence[str]) -> Tally:
    found = set(re.findall(rf"^{pattern}", done.out, re.MULTILINE)) & set(known)
    why = "" if done.rc == 0 else f"exit {done.rc}: {last_line(done.err or done.out)[:200]}"
    return Tally(len(found), why)


def pssh_tool(lab: Lab, env: dict[str, str], pool: int) -> Tool:
    argv = [sys.executable, str(HERE / "pssh_true.py"), str(lab.port), str(lab.key),
            *lab.addresses]
    missing = "" if importlib.util.find_spec("pssh") else (
        "parallel-ssh not installed (pip install -e '.[bench]')")
    return Tool(f"parallel-ssh pool_size={pool}", argv, env,
                lambda d: _json_line_tally(d, lab), missing)


def fabric_tool(lab: Lab, env: dict[str, str]) -> Tool:
    """A plain Fabric ThreadingGroup: what opskit's runner is built to beat."""
    argv = [sys.executable, str(HERE / "fabric_true.py"), str(lab.port), str(lab.key),
            *lab.addresses]
    return Tool(FABRIC_ROW, argv, env, lambda d: _json_line_tally(d, lab))


def _json_line_tally(done: Done, lab: Lab) -> Tally:
    """Outcomes printed by bench/pssh_true.py or bench/fabric_true.py."""
    try:
        doc = json.loads(last_line(done.out) or "{}")
    except json.JSONDecodeError:
        doc = {}
    if "ok" not in doc:
        return Tally(0, f"exit {done.rc}, no result line: {last_line(done.err)}")
    ok = set(doc["ok"]) & set(lab.addresses)
    why = next((f"{h}: {e}" for h, e in (doc.get("errors") or {}).items()), "")
    if done.rc != 0:
        why = f"exit {done.rc}; {why or last_line(done.err)}"
    return Tally(len(ok), why)


def ansible_tool(lab: Lab, env: dict[str, str], forks: int) -> Tool:
    exe = program("ansible")
    argv = [exe or "ansible", "all", "-i", str(lab.inventory), "-m", "raw", "-a", "true",
            "-f", str(forks), "-o"]
    missing = "" if exe else "ansible not installed (pip install -e '.[bench]')"
    return Tool(f"Ansible raw -f {forks}", argv, ansible_env(lab, env),
                lambda d: _lines_tally(d, r"(\S+) \| (?:CHANGED|SUCCESS) \| rc=0\b", lab.names),
                missing)


def tools(lab: Lab, env: dict[str, str], hosts: int) -> list[Tool]:
    return [
        opskit_tool(lab, env, hosts),
        opskit_tool(lab, env, BOUNDED_FORKS),
        openssh_tool(lab, env, hosts),
        openssh_tool(lab, env, hosts, kex=CURVE25519),
        pssh_tool(lab, env, hosts),
        fabric_tool(lab, env),
        ansible_tool(lab, env, hosts),
    ]


# ---------------------------------------------------------------- measuring


def attempt(tool: Tool, lab: Lab) -> Attempt:
    done, cost = metered_run(tool.argv, tool.env, lab.sshd_pids)
    return Attempt(cost.seconds, cost.client_cpu, cost.server_cpu, cost.machine_cpu, cost.steal,
                   tool.tally(done), done.peak_rss_mib)


def measure(all_tools: Sequence[Tool], lab: Lab, repeat: int) -> list[Row]:
    """One warm-up each, then ``repeat`` rounds; each round runs every tool once, in turn.

    A tool is dropped (its row failed) at its first run that does not reach every host.
    """
    rows = [Row(t, failure=t.missing) for t in all_tools]

    def once(row: Row, label: str) -> tuple[Attempt, str]:
        one = attempt(row.tool, lab)
        _log(row.tool.name, label, one, len(lab.names))
        if one.tally.reached == len(lab.names) and not one.tally.why:
            return one, ""
        why = (one.tally.why or "no error shown")[:300]
        return one, f"reached {one.tally.reached}/{len(lab.names)} hosts: {why}"

    take_rounds(rows, repeat, once)
    return rows


def _log(name: str, what: str, one: Attempt, hosts: int) -> None:
    print(f"{name:36} {what:12} {one.seconds:7.2f} s  reached {one.tally.reached}/{hosts}  "
          f"client {one.client_cpu:5.2f} CPU-s  sshd {one.server_cpu:5.2f} CPU-s",
          file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the report


def _ratio(row: Row, anchor: Row | None) -> str:
    mine = row.median(lambda a: a.seconds) if row.ok else None
    theirs = anchor.median(lambda a: a.seconds) if anchor is not None and anchor.ok else None
    return "–" if mine is None or not theirs else f"{mine / theirs:.2f}×"


def figures_table(rows: Sequence[Row], openssh: Row | None, base: Row | None) -> list[str]:
    out = ["| tool | median s | min s | ratio to OpenSSH | ratio to opskit |",
           "|---|---:|---:|---:|---:|"]
    for row in rows:
        if not row.ok:
            out.append(f"| {row.tool.name} | failed | – | – | – |")
            continue
        best = min(a.seconds for a in row.runs)
        out.append(f"| {row.tool.name} | {fmt(row.median(lambda a: a.seconds))} | "
                   f"{fmt(best)} | {_ratio(row, openssh)} | {_ratio(row, base)} |")
    failed = [f"- **{r.tool.name}** failed: {r.failure}" for r in rows if not r.ok]
    return out + ([""] + failed if failed else [])


def cpu_table(rows: Sequence[Row], hosts: int, cores: int) -> list[str]:
    out = ["| tool | client CPU-s | client CPU ms per host | lab sshd CPU-s | "
           f"sshd CPU-s per connection | CPU floor on {cores} cores, s | median wall s | "
           "other CPU-s | steal s | peak RSS MiB |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in (r for r in rows if r.ok):
        client = row.median(lambda a: a.client_cpu) or 0.0
        server = row.median(lambda a: a.server_cpu) or 0.0
        out.append(f"| {row.tool.name} | {client:.2f} | {1000 * client / hosts:.1f} | "
                   f"{server:.2f} | {server / hosts:.3f} | "
                   f"{(client + server) / cores:.2f} | "
                   f"{fmt(row.median(lambda a: a.seconds))} | "
                   f"{fmt(row.median(lambda a: a.other_cpu))} | "
                   f"{fmt(row.median(lambda a: a.steal))} | "
                   f"{max(a.peak_rss_mib for a in row.runs):.0f} |")
    return out


def _seconds(row: Row) -> float:
    return row.median(lambda a: a.seconds) or 0.0


def _machine_busy(row: Row) -> float:
    return row.median(lambda a: max(a.machine_cpu, a.client_cpu + a.server_cpu)) or 0.0


def _per_connection(row: Row, hosts: int) -> float:
    return (row.median(lambda a: a.server_cpu) or 0.0) / hosts


def reading(rows: Sequence[Row], hosts: int, startup: float | None) -> list[str]:
    ok = sorted((r for r in rows if r.ok), key=_seconds)
    if not ok:
        return ["- No tool reached every host in every run: no figures."]
    order = "; ".join(f"{r.tool.name}: {_seconds(r):.2f} s" for r in ok)
    spread = "; ".join(
        f"{r.tool.name} {min(a.seconds for a in r.runs):.2f}–{max(a.seconds for a in r.runs):.2f} s"
        for r in ok)
    return [
        f"- Fastest to slowest (median): {order}.",
        f"- Range of the timed runs: {spread}. Rows whose ranges overlap are not told apart "
        "by this run.",
        *goal_lines(ok, hosts),
        *_opskit_lines(ok, startup),
        *_server_lines(ok, hosts),
    ]


def goal_lines(ok: Sequence[Row], hosts: int) -> list[str]:
    """Issue 9's goals, checked against every OpenSSH row (default and like-for-like kex)."""
    by_name = {r.tool.name: r for r in ok}
    mine = by_name.get(f"opskit -f {hosts}")
    if mine is None:
        return ["- Goals: the opskit row did not reach every host; not checked."]
    wall, cpu = _seconds(mine), mine.median(lambda a: a.client_cpu) or 0.0
    lines = []
    for row in (r for r in ok if r.tool.name.startswith("OpenSSH")):
        ratio = wall / _seconds(row)
        their = row.median(lambda a: a.client_cpu) or 0.0
        lines.append(
            f"- Goal vs {row.tool.name}: wall {ratio:.2f}× theirs (goal ≤ {GOAL_VS_OPENSSH}: "
            f"{'met' if ratio <= GOAL_VS_OPENSSH else 'NOT met'}); client CPU "
            f"{1000 * cpu / hosts:.1f} ms per host against {1000 * their / hosts:.1f} "
            f"({'met' if cpu <= their else 'NOT met'}).")
    ansible = next((r for r in ok if r.tool.name.startswith("Ansible")), None)
    if ansible is not None:
        speedup = _seconds(ansible) / wall
        lines.append(f"- Goal vs Ansible: {speedup:.2f}× faster (goal ≥ {GOAL_VS_ANSIBLE}: "
                     f"{'met' if speedup >= GOAL_VS_ANSIBLE else 'NOT met'}).")
    python = [r for r in ok if r.tool.name.startswith(("parallel-ssh", "Fabric"))]
    if python:
        faster = [r.tool.name for r in python if _seconds(r) < wall]
        lines.append("- Among the Python tools opskit -f " f"{hosts} is "
                     + (f"slower than {', '.join(faster)}." if faster else "the fastest."))
    return lines


def _opskit_lines(ok: Sequence[Row], startup: float | None) -> list[str]:
    lines = []
    for row in (r for r in ok if r.tool.name.startswith("opskit")):
        wall, inner = row.median(lambda a: a.seconds), row.median(lambda a: a.tally.inner)
        if wall is not None and inner is not None:
            lines.append(
                f"- {row.tool.name}: {inner:.2f} s of its {wall:.2f} s is the fan-out itself "
                f"(the `duration` opskit reports); the other {wall - inner:.2f} s is interpreter "
                "start, imports, inventory load and JSON output.")
    if startup is not None:
        lines.append(f"- `opskit --version` (interpreter start + opskit's imports) takes "
                     f"{startup:.2f} s on this machine.")
    return lines


def _server_lines(ok: Sequence[Row], hosts: int) -> list[str]:
    by_cost = sorted(ok, key=lambda r: _per_connection(r, hosts))
    low, high = by_cost[0], by_cost[-1]
    cores = os.cpu_count() or 1
    floor = _per_connection(low, hosts) * hosts / cores
    opskit = {r.tool.name: r for r in ok if r.tool.name.startswith("opskit")}
    bounded, wide = opskit.get(f"opskit -f {BOUNDED_FORKS}"), opskit.get(f"opskit -f {hosts}")
    lines = []
    if bounded and wide and bounded is not wide:
        few, many = _per_connection(bounded, hosts), _per_connection(wide, hosts)
        if few < 0.9 * many:
            lines.append(
                f"- Concurrency costs CPU here: with {BOUNDED_FORKS} connections at a time each "
                f"took {few:.3f} sshd CPU-s, with {hosts} at a time {many:.3f}, so the bounded "
                f"run was faster ({_seconds(bounded):.2f} s against {_seconds(wide):.2f} s). "
                "On few cores, more parallel handshakes only add contention.")
    bound = [_seconds(r) * cores / _machine_busy(r) for r in ok if _machine_busy(r)]
    if bound:
        verdict = ("the cores were busy nearly the whole run, so these figures rank CPU cost "
                   "per connection (client and server), not latency" if max(bound) < 1.3 else
                   "the cores were not saturated throughout, so waiting (latency, a tool's own "
                   "pacing) counts too")
        lines.append(
            f"- Wall time was {min(bound):.2f}–{max(bound):.2f}× (client + sshd + other CPU-s) "
            f"/ {cores} cores across the rows (1 = every core busy all the time): {verdict}.")
    return lines + [
        f"- The lab sshds used {_per_connection(low, hosts):.3f} ({low.tool.name}) to "
        f"{_per_connection(high, hosts):.3f} ({high.tool.name}) CPU-s per connection "
        f"(LAB-NOTES: ≈ 0.11). Even at the lowest, {hosts} connections cost "
        f"{floor * cores:.1f} CPU-s on the server side, on the same {cores} cores as the "
        f"client: {floor:.1f} s of wall time that no client can go below.",
    ]


CAVEATS = """\
- Every tool opens a fresh SSH connection per host per run (Ansible with
  `ANSIBLE_SSH_ARGS=-o ControlMaster=no`; its default ControlPersist would let the later runs
  reuse master connections and skip the handshake). Connections go over loopback: there is no
  network latency, so the figures are CPU cost, not what a fleet across a network shows,
  where round trips dominate and concurrency matters more.
- The lab sshds run on the same cores as the tool being measured, so a tool that burns more
  client CPU also slows the servers down. "CPU floor" = (client + sshd CPU-s) / cores: a
  median wall time close to it means the run was CPU-bound.
- Key exchange: the OpenSSH 9 client (so also Ansible, which drives `ssh`) negotiates the
  post-quantum hybrid `sntrup761x25519-sha512` with the lab sshd, whose client half is
  expensive; paramiko (opskit) and libssh2 (parallel-ssh) end up with `curve25519-sha256`.
  The row "OpenSSH ..., curve25519 kex" forces `-o KexAlgorithms=curve25519-sha256` to
  compare like with like; compare the two OpenSSH rows' client CPU.
- opskit, OpenSSH and Ansible check host keys against the lab's known_hosts; parallel-ssh's
  native client does no host-key check at all, and a plain Fabric ThreadingGroup accepts any
  key (Fabric's auto-add policy): one less verification, slightly less work.
- The plain Fabric row is `ThreadingGroup(*hosts, user, port, connect_kwargs={key_filename})
  .run('true', hide=True, warn=True)` from `bench/fabric_true.py`: one thread per host, the
  kernel's TCP defaults. It shows what opskit's runner adds over Fabric (see docs/scale.md).
- The OpenSSH row wraps each `ssh` in `sh -c '"$@" && echo "ok $0"'` to count the hosts
  reached; that costs one `sh` per host (about a millisecond).
- Client CPU is user + system time of the tool's processes (all its children included, e.g.
  Ansible's forks and its `ssh` processes); sshd CPU is read from the lab sshd listeners,
  which reap their per-connection children. "peak RSS" is the high-water mark (VmHWM) of
  the tool's own process, sampled every 20 ms, the most of the timed runs: for the OpenSSH
  rows that is xargs (each `ssh` is a few MiB), for Ansible its controller process.
- "other CPU-s" is the machine's busy CPU time during the run (all cores, /proc/stat) less
  the tool's and the sshds': the kernel's loopback work, and anything else running on the
  machine (other labs, tests, builds). "steal s" is time the hypervisor took from our
  virtual CPUs. Large values in either mean the run was disturbed.
- A row whose runs did not all reach every host is shown as failed with the reason; no time
  is reported for it."""


def anchors(rows: Sequence[Row], hosts: int) -> tuple[Row | None, Row | None]:
    """(the OpenSSH row, the opskit -f HOSTS row): what the ratios are taken against."""
    openssh = next((r for r in rows if r.tool.name.startswith("OpenSSH")), None)
    base = next((r for r in rows if r.tool.name == f"opskit -f {hosts}"), None)
    return openssh, base


def report(rows: Sequence[Row], args: argparse.Namespace, facts: list[tuple[str, str]],
           startup: float | None, started: datetime) -> str:
    openssh, base = anchors(rows, args.hosts)
    cores = os.cpu_count() or 1
    parts = [
        f"## Fan-out: `true` on {args.hosts} hosts",
        "",
        f"Wall time to run `true` on every host of a {args.hosts}-host lab fleet (real `sshd -D`"
        f" processes on 127.10.0.1–{args.hosts}, port {args.port}, from `opskit lab up` in a "
        "temp state dir), for each tool in the same run on the same machine. Each tool had one "
        f"warm-up run, then {args.repeat} timed runs (taken in rounds: every tool once per "
        "round). Every run was checked to reach every host (exit 0 counted per host).",
        "",
        "Commands (`HOSTS` = the host count, `INV` = the lab's Ansible-style inventory):",
        "",
        "- opskit: `opskit -i INV exec --yes --json -f HOSTS -- true`, and with `-f 10`",
        "- OpenSSH: `xargs -P HOSTS` over `ssh -i KEY -o UserKnownHostsFile=KNOWN_HOSTS "
        "-o StrictHostKeyChecking=yes -o BatchMode=yes -p PORT root@ADDR true`",
        "- parallel-ssh: `ParallelSSHClient(hosts, user='root', pkey=KEY, port=PORT, "
        "pool_size=HOSTS)`, `run_command('true')`, `join()`, from a script started as a "
        "subprocess (`bench/pssh_true.py`) so its import time counts as a CLI's would",
        "- plain Fabric: `ThreadingGroup(*hosts, ...).run('true')` (`bench/fabric_true.py`, "
        "also a subprocess)",
        "- Ansible: `ansible all -i INV -m raw -a true -f HOSTS -o` with "
        "`ANSIBLE_HOST_KEY_CHECKING=True` (known_hosts via `ansible_ssh_common_args`)",
        "",
        *figures_table(rows, openssh, base),
        "",
        "Ratios are median over median: above 1 is slower than the anchor.",
        "",
        "### CPU per run (medians)",
        "",
        *cpu_table(rows, args.hosts, cores),
        "",
        "### Reading",
        "",
        *reading(rows, args.hosts, startup),
        "",
        "How to read them:",
        "",
        CAVEATS,
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
        f"# options: .venv/bin/python bench/fanout.py --hosts {args.hosts} "
        f"--repeat {args.repeat} --port {args.port}",
        "```",
        "",
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100, help="lab hosts (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool (default 3)")
    parser.add_argument("--port", type=int, default=2422, help="lab sshd port (default 2422)")
    parser.add_argument("--out", type=Path, default=REPORT,
                        help="report whose fan-out section to (re)write "
                        "(default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if args.hosts < 1 or args.repeat < 1:
        parser.error("--hosts and --repeat must be at least 1")
    return args


def bench(args: argparse.Namespace, root: Path) -> None:
    started = datetime.now(timezone.utc)
    lab = lab_up(args.hosts, args.port, root)
    env = {**os.environ, "OPSKIT_JOURNAL": str(lab.work / "journal.jsonl")}
    all_tools = tools(lab, env, args.hosts)
    background = background_load(lab.sshd_pids)
    rows = measure(all_tools, lab, args.repeat)
    pssh = f"{dist_version('parallel-ssh')} (ssh2-python {dist_version('ssh2-python')})"
    facts = machine(env, all_tools[-1].env, background, [("parallel-ssh", pssh)])
    write_section(args.out, report(rows, args, facts, startup_time(env), started))
    print(f"wrote {args.out}", file=sys.stderr)
    print("\n".join(figures_table(rows, *anchors(rows, args.hosts))))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    root = Path(tempfile.mkdtemp(prefix="opskit-bench-"))
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
