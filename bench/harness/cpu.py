"""Where a phase's CPU went, per process (Linux /proc; silently absent elsewhere)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
COMM_LABELS = {"postgres": "postgres", "redis-server": "redis"}


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy: float  # CPU seconds of the whole machine
    labelled: dict[str, float]  # CPU seconds of the processes we know, by role
    others: dict[str, float]  # the rest, by command name
    # CPU seconds of each process of the groups we started, by (role, pid).
    processes: dict[tuple[str, int], float]


@dataclass
class CpuMeter:
    """CPU per role between two snapshots, to show where a phase's CPU went, and whether
    something else on the machine took part of it (which makes a run incomparable)."""

    groups: dict[int, str] = field(default_factory=dict)  # process group id -> label

    def label(self, pgid: int, role: str) -> None:
        """Count the CPU of process group ``pgid`` (a process we started) as ``role``."""
        self.groups[pgid] = role

    def snapshot(self) -> CpuSnapshot | None:
        try:
            labelled, others, processes = self._scan()
            return CpuSnapshot(time.monotonic(), machine_busy_s(), labelled, others, processes)
        except (OSError, ValueError, IndexError):
            return None

    def report(self, before: CpuSnapshot | None) -> str:
        """ "cpu, cores busy of N: all X = api A, worker W, ...", or "" without /proc."""
        after = self.snapshot()
        if before is None or after is None or after.wall <= before.wall:
            return ""
        wall = after.wall - before.wall
        used = {
            label: (after.labelled.get(label, 0.0) - before.labelled.get(label, 0.0)) / wall
            for label in sorted(set(after.labelled) | set(before.labelled))
        }
        busy = (after.busy - before.busy) / wall
        # Kernel threads, anything not ours, and processes that ended within the phase
        # (autovacuum workers, say): /proc no longer has their CPU time.
        other = max(0.0, busy - sum(used.values()))
        grown = {c: (t - before.others.get(c, 0.0)) / wall for c, t in after.others.items()}
        top = max(grown, key=grown.__getitem__, default="")
        parts = [
            f"{label} {cores:.2f}{_each_process(label, before, after, wall)}"
            for label, cores in used.items()
        ]
        named = f" (largest: {top} {grown[top]:.2f})" if top and grown[top] >= 0.05 else ""
        parts.append(f"other {other:.2f}{named}")
        return f"cpu, cores busy of {os.cpu_count()}: all {busy:.2f} = " + ", ".join(parts)

    def _scan(
        self,
    ) -> tuple[dict[str, float], dict[str, float], dict[tuple[str, int], float]]:
        labelled: dict[str, float] = {}
        others: dict[str, float] = {}
        processes: dict[tuple[str, int], float] = {}
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            rest = stat[stat.rindex(")") + 2 :].split()
            # stat(5): after "pid (comm)", pgrp is field 3 and utime/stime fields 12/13.
            pgrp, cpu = int(rest[2]), (int(rest[11]) + int(rest[12])) / CLK_TCK
            label = "bench" if int(entry.name) == me else self.groups.get(pgrp)
            if label is not None:
                processes[label, int(entry.name)] = cpu
            label = label or COMM_LABELS.get(comm)
            bucket, key = (labelled, label) if label else (others, comm)
            bucket[key] = bucket.get(key, 0.0) + cpu
        # wrk has exited (and been reaped) by the time a phase reports, so /proc no longer
        # shows it; its CPU lands in our children's rusage. The services are still running,
        # so between two snapshots that grows by wrk's share only.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        labelled["wrk"] = children.ru_utime + children.ru_stime
        return labelled, others, processes


def _each_process(label: str, before: CpuSnapshot, after: CpuSnapshot, wall: float) -> str:
    """ " (0.41 + 0.40)": the cores of each busy process of a role we started, when it has
    several (the API's processes, say); "" otherwise."""
    each = [
        (cpu - before.processes.get(key, 0.0)) / wall
        for key, cpu in sorted(after.processes.items())
        if key[0] == label
    ]
    busy = [cores for cores in each if cores >= 0.01]
    return f" ({' + '.join(f'{cores:.2f}' for cores in busy)})" if len(busy) > 1 else ""


def machine_busy_s() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK
