"""What the benchmarks share: the lab, running and metering tools, machine facts, the report file.

bench/fanout.py and bench/deploy.py each bring up their own lab (temp state dir, own port),
run tools as subprocesses in their own process groups, meter wall time and CPU (the tool's,
the lab sshds', the whole machine's), and write their own ``## `` section of
docs/benchmarks.md (:func:`write_section`), leaving the other sections as they are.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

import opskit
import opskit.lab
from opskit.errors import OpskitError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REPORT = REPO / "docs" / "benchmarks.md"
BIN = Path(sys.executable).parent  # the venv's bin: opskit and ansible live here
RUN_TIMEOUT = 600.0  # seconds; a run past this is killed and counts as failed
QUIET_TIMEOUT = 10.0  # seconds to wait after a run for the sshds' per-connection children

REPORT_HEADER = """\
# Benchmarks

Written by `make bench`: `bench/fanout.py` and `bench/deploy.py` each (re)write only their own
`## ` section below and keep the others; regenerate them rather than editing this file.
"""
# Sections in the order they appear in the report, by the start of their heading.
SECTION_ORDER = ("Fan-out", "Scale", "Latency", "Deploy", "Snapshot", "Failover", "Cache")


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
    # Peak resident set (VmHWM) of the started process itself, sampled every 20 ms.
    peak_rss_mib: float = 0.0


# ---------------------------------------------------------------- processes


def run(argv: Sequence[str], env: dict[str, str], timeout: float = RUN_TIMEOUT) -> Done:
    """Run ``argv`` in its own process group; kill the whole group on timeout or interrupt.

    The peak RSS reported is the high-water mark (VmHWM) of the started process itself,
    sampled while it runs: rusage's ``ru_maxrss`` would count the copy of this (large)
    benchmark process that fork makes before exec.
    """
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, start_new_session=True,
    )
    sampler = _PeakRss(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return Done(-9, out, err + f"\nkilled after {timeout:.0f} s", sampler.stop())
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        sampler.stop()
        raise
    return Done(proc.returncode, out, err, sampler.stop())


class _PeakRss:
    """Polls /proc/PID/status for VmHWM (every 20 ms, one small read) until stopped."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")
        self.peak_kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.wait(0.02):
            try:
                text = self.path.read_text()
            except OSError:
                return
            match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
            if match:  # absent once the process is a zombie
                self.peak_kib = max(self.peak_kib, int(match.group(1)))

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak_kib / 1024


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu(pids: Sequence[int]) -> float:
    """CPU-s of these processes and the children they reaped (for the lab's sshd listeners:
    every connection they served, with the commands it ran)."""
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
    for line in read_text("/proc/stat").splitlines():
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


@dataclass(frozen=True)
class Cost:
    """What one run of a tool cost: wall time and CPU."""

    seconds: float
    client_cpu: float  # CPU-s of the tool's processes (user + sys, children reaped)
    server_cpu: float  # CPU-s of the lab sshds (and the commands they ran) during the run
    machine_cpu: float  # CPU-s of the whole machine (all cores, /proc/stat) during the run
    steal: float  # seconds the hypervisor gave our vCPUs to someone else during the run

    @property
    def other_cpu(self) -> float:
        """CPU-s neither the tool nor the sshds used: kernel network work, other processes."""
        return max(0.0, self.machine_cpu - self.client_cpu - self.server_cpu)


class Meter:
    """Meters one tool run: create it, run the tool, ``lap()`` when it exits, ``finish()``.

    Work done between ``lap`` and ``finish`` (checking what the run did) is not counted,
    except that ``finish`` waits for the sshds to reap their children so their CPU counts.
    """

    def __init__(self, sshd_pids: Sequence[int]) -> None:
        self.pids = list(sshd_pids)
        wait_quiet(self.pids)
        self.server0, self.client0 = tree_cpu(self.pids), children_cpu()
        self.busy0, self.steal0 = machine_cpu()
        self.t0 = time.perf_counter()
        self.ended: float | None = None  # time.monotonic() at lap
        self._lap: tuple[float, float, float, float] | None = None

    def lap(self) -> None:
        seconds = time.perf_counter() - self.t0
        self.ended = time.monotonic()
        busy, steal = machine_cpu()
        self._lap = (seconds, children_cpu() - self.client0, busy - self.busy0,
                     steal - self.steal0)

    def finish(self) -> Cost:
        if self._lap is None:
            self.lap()
        assert self._lap is not None
        seconds, client, busy, steal = self._lap
        wait_quiet(self.pids)
        return Cost(seconds, client, tree_cpu(self.pids) - self.server0, busy, steal)


def run_tool(argv: Sequence[str], env: dict[str, str]) -> Done:
    """:func:`run`, with a tool that cannot be started counted as exit 127."""
    try:
        return run(argv, env)
    except OSError as exc:
        return Done(127, "", str(exc))


def metered_run(argv: Sequence[str], env: dict[str, str], sshd_pids: Sequence[int]
                ) -> tuple[Done, Cost]:
    """Run a tool once and meter it."""
    meter = Meter(sshd_pids)
    done = run_tool(argv, env)
    meter.lap()
    return done, meter.finish()


class Series(Protocol):
    """A row of a report: its timed runs, or why it failed ("" while it has not)."""

    failure: str
    runs: list[Any]


S = TypeVar("S", bound=Series)


def take_rounds(rows: Sequence[S], repeat: int, once: Callable[[S, str], tuple[Any, str]]
                ) -> None:
    """One untimed (warm-up) round, then ``repeat`` timed ones; a round runs every row once.

    ``once(row, label)`` runs the row's tool once (``label`` e.g. "run 2/3", for its log line)
    and returns the attempt and what it fell short of ("" when it reached every host). A row
    is dropped (its ``failure`` set) at its first run that fell short; timed runs are kept
    in ``row.runs``.
    """
    for label, rounds in (("warm-up", 1), ("run", repeat)):
        for i in range(rounds):
            for row in [r for r in rows if not r.failure]:
                one, short = once(row, f"{label} {i + 1}/{rounds}")
                if short:
                    row.failure = f"{label} {i + 1} {short}"
                elif label == "run":
                    row.runs.append(one)


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


def program(name: str) -> str | None:
    """A program of the venv (opskit, ansible, ...), else from PATH."""
    local = BIN / name
    return str(local) if local.is_file() else shutil.which(name)


def startup_time(env: dict[str, str]) -> float | None:
    """Median wall time of ``opskit --version``: interpreter start plus opskit's imports."""
    exe = program("opskit")
    if not exe:
        return None
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        run([exe, "--version"], env, timeout=60)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def terminate(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM handler: unwind through the ``finally`` that downs the lab."""
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------- the lab


def lab_up(hosts: int, port: int, root: Path) -> Lab:
    state_dir, work = root / "lab", root / "work"
    work.mkdir(parents=True)
    inventory = root / "lab.yml"
    print(f"bringing up {hosts} lab hosts on port {port} (state dir {state_dir})", file=sys.stderr)
    try:
        status = opskit.lab.up(hosts, port=port, state_dir=state_dir, inventory_path=inventory)
    except Exception as exc:  # e.g. the lab's moto server answering 500 under load
        # `up` is idempotent (it keeps what it made, makes what is missing): once more.
        print(f"lab up failed ({type(exc).__name__}: {str(exc)[:200]}); trying once more",
              file=sys.stderr)
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


# ---------------------------------------------------------------- machine facts


def background_load(ours: Sequence[int]) -> str:
    """What else ran when the bench started: load average and other labs' sshd listeners."""
    load = " ".join(read_text("/proc/loadavg").split()[:3]) or "?"
    others = sum(1 for pid in pids() if pid not in ours and _is_sshd_listener(pid))
    return f"load average {load}; {others} sshd listener(s) of other labs or daemons running"


def pids() -> list[int]:
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]


def _is_sshd_listener(pid: int) -> bool:
    # Listeners rewrite their title ("sshd: /usr/sbin/sshd -D ... [listener] ..."): no argv.
    text = read_text(f"/proc/{pid}/cmdline").replace("\0", " ")
    return re.match(r"(\S*/)?sshd\b.* -D\b", text) is not None


def machine(env: dict[str, str], ansible: dict[str, str], background: str,
            extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The machine and tool versions for a report; ``extra`` goes before Ansible."""
    cpu = next((line.split(":", 1)[1].strip() for line in read_text("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), "unknown CPU")
    os_name = next((line.split("=", 1)[1].strip('"') for line in
                    read_text("/etc/os-release").splitlines() if line.startswith("PRETTY_NAME=")),
                   "")
    opskit_deps = ", ".join(f"{d} {dist_version(d)}" for d in ("fabric", "paramiko"))
    return [
        ("CPU", f"{os.cpu_count()} cores, {cpu}"),
        ("kernel", f"Linux {platform.release()} ({os_name})"),
        ("Python", platform.python_version()),
        ("opskit", f"{opskit.__version__} ({opskit_deps})"),
        ("OpenSSH (client and lab sshd)", version_line(["ssh", "-V"], env)),
        *extra,
        ("Ansible", version_line([program("ansible") or "ansible", "--version"], ansible)),
        ("at the start", background),
    ]


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


# ---------------------------------------------------------------- the report file


def write_section(path: Path, section: str) -> None:
    """Put ``section`` (starting with its ``## `` heading) into the report at ``path``.

    The section with the same heading start (one of SECTION_ORDER, e.g. "Fan-out") is
    replaced; every other section is kept; the file header is always REPORT_HEADER.
    """
    key = _section_key(section.splitlines()[0])
    sections = {_section_key(s.splitlines()[0]): s for s in _sections(read_text(path))}
    sections[key] = section
    sections = {k: v.strip("\n") + "\n" for k, v in sections.items()}
    rank = {k: i for i, k in enumerate(SECTION_ORDER)}
    ordered = sorted(sections, key=lambda k: rank.get(k, len(rank)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(REPORT_HEADER + "".join(f"\n{sections[k]}" for k in ordered))
    os.replace(tmp, path)


def _sections(text: str) -> list[str]:
    """The ``## `` sections of a report (the header before the first one is dropped)."""
    found: list[list[str]] = []
    fenced = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if line.startswith("## ") and not fenced:
            found.append([])
        if found:
            found[-1].append(line)
    return ["".join(lines) for lines in found]


def _section_key(heading: str) -> str:
    title = heading.removeprefix("## ").strip()
    return next((k for k in SECTION_ORDER if title.startswith(k)), title)
