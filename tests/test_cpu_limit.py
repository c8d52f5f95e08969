"""A container's CPU limit (cgroup quota) sets how many threads prediction runs, not the node's CPU count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clintune.inference.predictor import Predictor
from clintune.runtime import system
from clintune.runtime.system import cpu_limit, cpu_quota, usable_cpus


def cgroup_tree(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake ``/proc/self/cgroup`` and ``/sys/fs/cgroup`` holding ``files`` (path under the root -> content)."""
    cgroups = tmp_path / "cgroup"
    tmp_path.mkdir(parents=True, exist_ok=True)
    cgroups.write_text(membership)
    root = tmp_path / "sys-fs-cgroup"
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return cgroups, root


def test_cgroup_v2_quota_is_rounded_up_to_whole_cpus(tmp_path: Path) -> None:
    # Docker --cpus 1.5: 150 ms of CPU time per 100 ms period
    assert cpu_quota(*cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "150000 100000\n"})) == 2


def test_cgroup_v2_without_a_quota_gives_none(tmp_path: Path) -> None:
    assert cpu_quota(*cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})) is None
    assert cpu_quota(*cgroup_tree(tmp_path / "bare", "0::/\n", {})) is None
    assert cpu_quota(tmp_path / "no-such-file", tmp_path) is None  # not Linux, or no /proc


def test_a_limit_above_the_process_cgroup_applies_and_the_smallest_wins(tmp_path: Path) -> None:
    # Kubernetes: the pod's limit is set on the pod's cgroup, the container's own says "max"
    membership = "0::/kubepods/pod7/container3\n"
    pod = {"kubepods/pod7/cpu.max": "400000 100000", "kubepods/pod7/container3/cpu.max": "max 100000"}
    assert cpu_quota(*cgroup_tree(tmp_path / "a", membership, pod)) == 4
    tighter = {**pod, "kubepods/pod7/container3/cpu.max": "100000 100000"}
    assert cpu_quota(*cgroup_tree(tmp_path / "b", membership, tighter)) == 1


def test_cgroup_v1_quota_over_period(tmp_path: Path) -> None:
    # v1 inside a container: the membership names the host's path, the mount shows the container's own cgroup
    membership = "4:cpu,cpuacct:/docker/0123abcd\n3:memory:/docker/0123abcd\n"
    limited = {"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}
    assert cpu_quota(*cgroup_tree(tmp_path / "a", membership, limited)) == 1
    three = {"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert cpu_quota(*cgroup_tree(tmp_path / "b", membership, three)) == 3
    unlimited = {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}
    assert cpu_quota(*cgroup_tree(tmp_path / "c", membership, unlimited)) is None


def test_the_limit_counts_only_when_it_is_below_the_cpus_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "_visible_cpus", lambda: 64)
    monkeypatch.setattr(system, "cpu_quota", lambda: 2)
    assert (cpu_limit(), usable_cpus()) == (2, 2)
    monkeypatch.setattr(system, "cpu_quota", lambda: 128)  # a quota above the CPUs this process may run on
    assert (cpu_limit(), usable_cpus()) == (None, 64)
    monkeypatch.setattr(system, "cpu_quota", lambda: None)
    assert (cpu_limit(), usable_cpus()) == (None, 64)


def test_a_predictor_in_a_limited_container_runs_that_many_threads(trained_models: dict[str, Path],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.setattr(system, "_visible_cpus", lambda: 64)
    monkeypatch.setattr(system, "cpu_quota", lambda: 1)
    try:
        torch.set_num_threads(2)
        Predictor.from_folder(trained_models["section_header"])
        assert torch.get_num_threads() == 1
        Predictor.from_folder(trained_models["section_header"], threads=2)  # --threads wins
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
