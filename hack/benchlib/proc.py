"""CPU time and memory of processes, read from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU of `pid`, plus its reaped children's when `children`."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    # fields[0] is field 3 (state); utime=14, stime=15, cutime=16, cstime=17 (1-based, proc(5)).
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / TICK


def status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmHWM, VmRSS, ...); 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Live descendants of `pid` (through /proc/*/stat parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU of `pid`, its reaped children and its live descendants."""
    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in descendants(pid))


def tree_peak_rss_kib(pid: int) -> int:
    """Peak resident set of `pid` plus the current peaks of its live descendants."""
    return status_kib(pid, "VmHWM") + sum(status_kib(c, "VmHWM") for c in descendants(pid))


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (every process on the machine)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICK


@dataclass
class CpuMeter:
    """CPU seconds used by named groups of processes between two marks, and by the whole machine.

    Each group is a list of (pid, with_descendants); a process that exits between two marks loses its share.
    """

    groups: dict[str, list[tuple[int, bool]]]

    def sample(self) -> dict[str, float]:
        out = {
            name: sum(
                tree_cpu_seconds(pid) if tree else cpu_seconds(pid, children=False) for pid, tree in members
            )
            for name, members in self.groups.items()
        }
        out["machine"] = machine_busy_seconds()
        return out

    def key_of(self, pid: int) -> str | None:
        return next(
            (name for name, members in self.groups.items() if any(p == pid for p, _ in members)), None
        )

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        out = {k: round(max(0.0, after.get(k, 0.0) - before.get(k, 0.0)), 2) for k in {**before, **after}}
        ours = sum(v for k, v in out.items() if k != "machine")
        out["other"] = round(max(0.0, out.get("machine", 0.0) - ours), 2)
        return dict(sorted(out.items()))


def machine() -> dict[str, object]:
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(total / 1024 / 1024, 1),
        "cpu_model": model,
        "loadavg_at_start": [float(x) for x in load],
    }
