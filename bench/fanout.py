"""Fan-out benchmark: wall time of ``true`` on every lab host, opskit against its anchors.

Brings up its own lab (temp state dir, own port, so the developer lab on 2222 and the test
lab on 2322 are untouched), times opskit, the OpenSSH client (``xargs -P``), parallel-ssh
and Ansible on the same hosts in the same run, writes docs/benchmarks.md and downs the lab.
Run it with ``make bench`` (as root). No pass/fail thresholds: it reports, it never asserts.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

import opskit
import opskit.lab
from opskit.errors import OpskitError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent  # the venv's bin: opskit and ansible live here
RUN_TIMEOUT = 600.0  # seconds; a run past this is killed and counts as failed
QUIET_TIMEOUT = 10.0  # seconds to wait after a run for the sshds' per-connection children
BOUNDED_FORKS = 10
# The key exchange paramiko (opskit) and libssh2 (parallel-ssh) end up with against this sshd;
# an extra OpenSSH row forces it, to compare like with like (see the report's caveats).
CURVE25519 = "curve25519-sha256"


@dataclass(frozen=True)
class Lab:
    state_dir: Path
    inventory: Path
    port: int
    names: list[str]
    addresses: list[str]
    sshd_pids: list[int]
    work: Path  # scratch dir for the tools' homes and temp files

    @property
    def key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"


@dataclass(frozen=True)
class Done:
    """A finished subprocess run."""

    rc: int
    out: str
    err: str


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


# ---------------------------------------------------------------- processes


def run(argv: Sequence[str], env: dict[str, str], timeout: float = RUN_TIMEOUT) -> Done:
    """Run ``argv`` in its own process group; kill the whole group on timeout or interrupt."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return Done(-9, out, err + f"\nkilled after {timeout:.0f} s")
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    return Done(proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sshd_cpu(pids: Sequence[int]) -> float:
    """CPU-s of the lab's sshd listeners and the per-connection children they reaped."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy CPU-s of all cores, steal s) since boot, from /proc/stat."""
    for line in _read("/proc/stat").splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
            hz = os.sysconf("SC_CLK_TCK")
            return busy / hz, (v[7] if len(v) > 7 else 0) / hz
    return 0.0, 0.0


def wait_quiet(pids: Sequence[int], timeout: float = QUIET_TIMEOUT) -> None:
    """Wait until the lab sshds have reaped every per-connection child (so its CPU counts)."""
    parents = {str(p) for p in pids}
    deadline = time.monotonic() + timeout
    while _has_children(parents) and time.monotonic() < deadline:
        time.sleep(0.05)


def _has_children(parents: set[str]) -> bool:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2 :].split()[1] in parents:
            return True
    return False


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def version_line(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    try:
        done = run(argv, env or dict(os.environ), timeout=60)
    except OSError as exc:
        return f"not available ({exc})"
    text = (done.out or done.err).strip()
    return text.splitlines()[0] if text else f"exit {done.rc}"


def dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------- the lab


def lab_up(hosts: int, port: int, root: Path) -> Lab:
    state_dir, work = root / "lab", root / "work"
    work.mkdir(parents=True)
    inventory = root / "lab.yml"
    print(f"bringing up {hosts} lab hosts on port {port} (state dir {state_dir})", file=sys.stderr)
    status = opskit.lab.up(hosts, port=port, state_dir=state_dir, inventory_path=inventory)
    if not status.running:
        down = [h.name for h in status.hosts if not h.answering]
        raise RuntimeError(f"lab hosts not answering: {' '.join(down)}")
    return Lab(
        state_dir=state_dir,
        inventory=inventory,
        port=port,
        names=[h.name for h in status.hosts],
        addresses=[h.address for h in status.hosts],
        sshd_pids=[h.pid for h in status.hosts if h.pid],
        work=work,
    )


def lab_down(state_dir: Path, root: Path) -> None:
    if not state_dir.is_dir():  # the lab never came up
        shutil.rmtree(root, ignore_errors=True)
        return
    try:
        for line in opskit.lab.down(state_dir=state_dir):
            if not line.startswith(("stopped sshd", "removed /")):
                print(line, file=sys.stderr)
    except OpskitError as exc:
        print(f"lab down failed: {exc.message}; left {root} in place", file=sys.stderr)
        raise
    shutil.rmtree(root, ignore_errors=True)
    print("lab down", file=sys.stderr)


# ---------------------------------------------------------------- the tools


def opskit_tool(lab: Lab, env: dict[str, str], forks: int) -> Tool:
    exe = _program("opskit")
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
                lambda d: _pssh_tally(d, lab), missing)


def _pssh_tally(done: Done, lab: Lab) -> Tally:
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


def ansible_env(lab: Lab, env: dict[str, str]) -> dict[str, str]:
    home = lab.work / "ansible"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    cfg = lab.work / "ansible.cfg"  # our own, so no ansible.cfg of the machine applies
    cfg.write_text("[defaults]\n")
    return {
        **env,
        "LC_ALL": "C.UTF-8",  # ansible refuses to run without a UTF-8 locale
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        # Fresh connections every run, like the other tools: ansible's default ControlPersist
        # would let runs after the first reuse (and leave behind) master connections.
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        "ANSIBLE_STDOUT_CALLBACK": "minimal",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def ansible_tool(lab: Lab, env: dict[str, str], forks: int) -> Tool:
    exe = _program("ansible")
    argv = [exe or "ansible", "all", "-i", str(lab.inventory), "-m", "raw", "-a", "true",
            "-f", str(forks), "-o"]
    missing = "" if exe else "ansible not installed (pip install -e '.[bench]')"
    return Tool(f"Ansible raw -f {forks}", argv, ansible_env(lab, env),
                lambda d: _lines_tally(d, r"(\S+) \| (?:CHANGED|SUCCESS) \| rc=0\b", lab.names),
                missing)


def _program(name: str) -> str | None:
    local = BIN / name
    return str(local) if local.is_file() else shutil.which(name)


def tools(lab: Lab, env: dict[str, str], hosts: int) -> list[Tool]:
    return [
        opskit_tool(lab, env, hosts),
        opskit_tool(lab, env, BOUNDED_FORKS),
        openssh_tool(lab, env, hosts),
        openssh_tool(lab, env, hosts, kex=CURVE25519),
        pssh_tool(lab, env, hosts),
        ansible_tool(lab, env, hosts),
    ]


# ---------------------------------------------------------------- measuring


def attempt(tool: Tool, lab: Lab) -> Attempt:
    wait_quiet(lab.sshd_pids)
    server0, client0, (busy0, steal0) = sshd_cpu(lab.sshd_pids), children_cpu(), machine_cpu()
    t0 = time.perf_counter()
    try:
        done = run(tool.argv, tool.env)
    except OSError as exc:
        done = Done(127, "", str(exc))
    seconds = time.perf_counter() - t0
    client = children_cpu() - client0
    busy1, steal1 = machine_cpu()
    wait_quiet(lab.sshd_pids)
    server = sshd_cpu(lab.sshd_pids) - server0
    return Attempt(seconds, client, server, busy1 - busy0, steal1 - steal0, tool.tally(done))


def measure(all_tools: Sequence[Tool], lab: Lab, repeat: int) -> list[Row]:
    """One warm-up each, then ``repeat`` rounds; each round runs every tool once, in turn.

    A tool is dropped (its row failed) at its first run that does not reach every host.
    """
    rows = [Row(t, failure=t.missing) for t in all_tools]
    for label, rounds in (("warm-up", 1), ("run", repeat)):
        for i in range(rounds):
            for row in (r for r in rows if not r.failure):
                one = attempt(row.tool, lab)
                _log(row.tool.name, f"{label} {i + 1}/{rounds}", one, len(lab.names))
                if one.tally.reached != len(lab.names) or one.tally.why:
                    why = (one.tally.why or "no error shown")[:300]
                    row.failure = (f"{label} {i + 1} reached {one.tally.reached}/"
                                   f"{len(lab.names)} hosts: {why}")
                elif label == "run":
                    row.runs.append(one)
    return rows


def _log(name: str, what: str, one: Attempt, hosts: int) -> None:
    print(f"{name:36} {what:12} {one.seconds:7.2f} s  reached {one.tally.reached}/{hosts}  "
          f"client {one.client_cpu:5.2f} CPU-s  sshd {one.server_cpu:5.2f} CPU-s",
          file=sys.stderr, flush=True)


def startup_time(env: dict[str, str]) -> float | None:
    """Median wall time of ``opskit --version``: interpreter start plus opskit's imports."""
    exe = _program("opskit")
    if not exe:
        return None
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        run([exe, "--version"], env, timeout=60)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


# ---------------------------------------------------------------- the report


def background_load(ours: Sequence[int]) -> str:
    """What else ran when the bench started: load average and other labs' sshd listeners."""
    load = " ".join(_read("/proc/loadavg").split()[:3]) or "?"
    others = sum(1 for pid in _pids() if pid not in ours and _is_sshd_listener(pid))
    return f"load average {load}; {others} sshd listener(s) of other labs or daemons running"


def _pids() -> list[int]:
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]


def _is_sshd_listener(pid: int) -> bool:
    # Listeners rewrite their title ("sshd: /usr/sbin/sshd -D ... [listener] ..."): no argv.
    text = _read(f"/proc/{pid}/cmdline").replace("\0", " ")
    return re.match(r"(\S*/)?sshd\b.* -D\b", text) is not None


def machine(env: dict[str, str], ansible: dict[str, str], background: str
            ) -> list[tuple[str, str]]:
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), "unknown CPU")
    os_name = next((line.split("=", 1)[1].strip('"') for line in
                    _read("/etc/os-release").splitlines() if line.startswith("PRETTY_NAME=")), "")
    opskit_deps = ", ".join(f"{d} {dist_version(d)}" for d in ("fabric", "paramiko"))
    return [
        ("CPU", f"{os.cpu_count()} cores, {cpu}"),
        ("kernel", f"Linux {platform.release()} ({os_name})"),
        ("Python", platform.python_version()),
        ("opskit", f"{opskit.__version__} ({opskit_deps})"),
        ("OpenSSH (client and lab sshd)", version_line(["ssh", "-V"], env)),
        ("parallel-ssh", f"{dist_version('parallel-ssh')} (ssh2-python "
                         f"{dist_version('ssh2-python')})"),
        ("Ansible", version_line([_program("ansible") or "ansible", "--version"], ansible)),
        ("at the start", background),
    ]


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


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
        out.append(f"| {row.tool.name} | {_fmt(row.median(lambda a: a.seconds))} | "
                   f"{_fmt(best)} | {_ratio(row, openssh)} | {_ratio(row, base)} |")
    failed = [f"- **{r.tool.name}** failed: {r.failure}" for r in rows if not r.ok]
    return out + ([""] + failed if failed else [])


def cpu_table(rows: Sequence[Row], hosts: int, cores: int) -> list[str]:
    out = ["| tool | client CPU-s | lab sshd CPU-s | sshd CPU-s per connection | "
           f"CPU floor on {cores} cores, s | median wall s | other CPU-s | steal s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in (r for r in rows if r.ok):
        client = row.median(lambda a: a.client_cpu) or 0.0
        server = row.median(lambda a: a.server_cpu) or 0.0
        out.append(f"| {row.tool.name} | {client:.2f} | {server:.2f} | {server / hosts:.3f} | "
                   f"{(client + server) / cores:.2f} | "
                   f"{_fmt(row.median(lambda a: a.seconds))} | "
                   f"{_fmt(row.median(lambda a: a.other_cpu))} | "
                   f"{_fmt(row.median(lambda a: a.steal))} |")
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
        *_opskit_lines(ok, startup),
        *_server_lines(ok, hosts),
    ]


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
  native client does no host-key check at all (one less verification, slightly less work).
- The OpenSSH row wraps each `ssh` in `sh -c '"$@" && echo "ok $0"'` to count the hosts
  reached; that costs one `sh` per host (about a millisecond).
- Client CPU is user + system time of the tool's processes (all its children included, e.g.
  Ansible's forks and its `ssh` processes); sshd CPU is read from the lab sshd listeners,
  which reap their per-connection children.
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
        "# Benchmarks",
        "",
        "Written by `bench/fanout.py` (`make bench`); regenerate it rather than editing it.",
        "",
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
        "make bench    # as root: pip install -e '.[bench]' into .venv, then bench/fanout.py",
        f"# options: .venv/bin/python bench/fanout.py --hosts {args.hosts} "
        f"--repeat {args.repeat} --port {args.port}",
        "```",
        "",
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50, help="lab hosts (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool (default 3)")
    parser.add_argument("--port", type=int, default=2422, help="lab sshd port (default 2422)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="report to write (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if args.hosts < 1 or args.repeat < 1:
        parser.error("--hosts and --repeat must be at least 1")
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that downs the lab


def bench(args: argparse.Namespace, root: Path) -> None:
    started = datetime.now(timezone.utc)
    lab = lab_up(args.hosts, args.port, root)
    env = {**os.environ, "OPSKIT_JOURNAL": str(lab.work / "journal.jsonl")}
    all_tools = tools(lab, env, args.hosts)
    background = background_load(lab.sshd_pids)
    rows = measure(all_tools, lab, args.repeat)
    facts = machine(env, all_tools[-1].env, background)
    text = report(rows, args, facts, startup_time(env), started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    print("\n".join(figures_table(rows, *anchors(rows, args.hosts))))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
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
