"""What this process may use: the CPUs its cgroup quota allows (no library walks nested cgroups), and
whether it is the main process of a torchrun / accelerate launch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def usable_cpus() -> int:
    """CPUs this process may use: its affinity where the platform tells it (else the machine's count),
    capped by its cgroup's CPU quota (``cpu_limit``)."""
    return cpu_limit() or _visible_cpus()


def cpu_limit() -> int | None:
    """The CPU count a cgroup quota holds this process to, where it is below the CPUs it sees; else None.

    PyTorch and ONNX Runtime start a thread per CPU they see. In a container with a CPU limit
    (Docker ``--cpus 2``, a Kubernetes ``limits.cpu``) on a 64-core node that is 64 threads taking
    turns on 2 CPUs' worth of time, so clintune then runs this many instead (``--threads`` overrides)."""
    quota = cpu_quota()
    return quota if quota is not None and quota < _visible_cpus() else None


def _visible_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_quota(cgroups: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """CPUs' worth of time this process's cgroup may use (quota over period, rounded up), or None without a quota.

    cgroup v2 (``cpu.max``: ``200000 100000``, or ``max``) and v1 (``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``, -1 for none), read in the process's own cgroup and every one above it
    (a limit anywhere above applies); the smallest quota wins."""
    try:
        lines = cgroups.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: one hierarchy
            folders, v1 = [root], False
        elif "cpu" in controllers.split(","):
            folders, v1 = [root / name for name in (controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu")], True
        else:
            continue
        relative = Path(path.strip().lstrip("/"))
        for base in dict.fromkeys(folders):
            for level in [relative, *relative.parents]:
                quota = _read_quota(base / level, v1)
                if quota is not None:
                    quotas.append(quota)
    return max(1, math.ceil(round(min(quotas), 3))) if quotas else None


def _read_quota(folder: Path, v1: bool) -> float | None:
    """Quota over period in one cgroup folder, or None where it sets none or the files are not there."""
    try:
        if v1:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        else:
            fields = (folder / "cpu.max").read_text().split()
            if fields[0] == "max":
                return None
            quota, period = int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def process_rank() -> int:
    """This process's rank in a torchrun / accelerate launch (``$RANK``); 0 when not launched so."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun / accelerate launch."""
    return process_rank() == 0
