"""A runbook being executed: numbered steps, each printed as it starts and ends, timed, and
journaled as it finishes -- so a failover cut short still leaves its trail in the journal.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from opskit import journal
from opskit.output import Environment


@dataclass
class Step:
    n: int
    title: str
    hosts: list[str]
    status: str = "running"  # ok | failed | skipped | warning | planned
    seconds: float = 0.0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Runbook:
    env: Environment
    name: str  # e.g. "pg failover"
    argv: Sequence[str]
    dry_run: bool = False
    steps: list[Step] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    @contextmanager
    def step(self, title: str, *hosts: str) -> Iterator[Step]:
        st = Step(len(self.steps) + 1, title, list(hosts))
        self.steps.append(st)
        where = f" [{', '.join(hosts)}]" if hosts else ""
        self.env.line(f"{st.n:>2}. {title}{where} ...")
        t = time.monotonic()
        try:
            yield st
            if st.status == "running":
                st.status = "ok"
        except BaseException as exc:
            st.status, st.detail = "failed", str(exc) or type(exc).__name__
            raise
        finally:
            st.seconds = round(time.monotonic() - t, 3)
            style = {"ok": "green", "failed": "bold red", "warning": "yellow"}.get(st.status)
            tail = f": {st.detail}" if st.detail else ""
            self.env.line(f"    {st.status} in {st.seconds:.2f}s{tail}", style=style)
            self._journal(st)

    def plan(self, title: str, *hosts: str, detail: str = "") -> None:
        """A step --dry-run would take (printed, not journaled one by one)."""
        st = Step(len(self.steps) + 1, title, list(hosts), "planned", 0.0, detail)
        self.steps.append(st)
        where = f" [{', '.join(hosts)}]" if hosts else ""
        self.env.line(f"{st.n:>2}. {title}{where}" + (f"\n    {detail}" if detail else ""))

    def _journal(self, st: Step) -> None:
        outcome = {"status": st.status, "exit_status": None,
                   "error": st.detail if st.status == "failed" else None}
        journal.record(f"{self.name} step", ["opskit", *self.argv],
                       {h: outcome for h in st.hosts} or {"-": outcome},
                       duration=st.seconds, exit_code=0 if st.status != "failed" else 2,
                       details={"step": st.n, "title": st.title, "status": st.status,
                                "detail": st.detail})

    def finish(self, exit_code: int, details: dict[str, Any]) -> dict[str, Any]:
        """The final journal entry (also for dry runs) and the JSON document."""
        hosts = sorted({h for s in self.steps for h in s.hosts})
        outcome = {"status": "ok" if exit_code == 0 else "failed", "exit_status": None,
                   "error": None}
        doc = {"command": self.name, "dry_run": self.dry_run, "exit_code": exit_code,
               "seconds": round(time.monotonic() - self.t0, 3),
               "steps": [s.to_dict() for s in self.steps], **details}
        journal.record(self.name, ["opskit", *self.argv], {h: outcome for h in hosts},
                       duration=doc["seconds"], exit_code=exit_code, dry_run=self.dry_run,
                       details={"steps": doc["steps"], **details})
        return doc
