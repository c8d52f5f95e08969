"""``clintune predict --input`` runs under jemalloc where the machine has it, with the same answers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_predict_stream import read_jsonl, same_records

from clintune.errors import ClintuneError
from clintune.runtime import allocator
from clintune.runtime.allocator import JEMALLOC_CONF, jemalloc_library, relaunch_under_jemalloc, wants_jemalloc

SECTION_CSV = REPO / "data" / "section_header" / "test.csv"


@pytest.mark.parametrize(("args", "wanted"), [
    (["predict", "--model", "m", "--input", "a.csv", "--output", "o.jsonl"], True),
    (["predict", "--model=m", "--input=a.csv"], True),
    (["--verbose", "predict", "--model", "m", "-i", "a.csv"], True),
    (["predict", "--model", "m", "-ia.csv"], True),
    (["predict", "--model", "m", "--input", "a.csv", "--engine", "local"], True),
    (["predict", "--model", "m", "--input", "a.parquet", "--engine", "ray"], False),  # Ray starts its own processes
    (["predict", "--engine=ray", "--input", "a.parquet"], False),
    (["predict", "--model", "m", "--text", "Patient: a rash."], False),  # one text: nothing to grow
    (["train", "configs/tiny/ner.yaml"], False),
    (["eval", "--model", "m", "--input", "t.csv"], False),
    ([], False),
])
def test_only_a_local_predict_over_a_file_wants_jemalloc(args: list[str], wanted: bool) -> None:
    assert wants_jemalloc(args) is wanted


def test_the_switch_names_the_library_or_keeps_the_system_allocator(tmp_path: Path) -> None:
    assert jemalloc_library({"CLINTUNE_MALLOC": "system"}) is None
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    assert jemalloc_library({"CLINTUNE_MALLOC": str(library)}) == library
    with pytest.raises(ClintuneError, match="no such file"):
        jemalloc_library({"CLINTUNE_MALLOC": str(tmp_path / "missing.so")})


def test_the_environment_for_ray_actors_follows_the_same_switch(tmp_path: Path) -> None:
    assert allocator.jemalloc_environment({"CLINTUNE_MALLOC": "system"}) == {}
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    named = {"CLINTUNE_MALLOC": str(library)}
    assert allocator.jemalloc_environment(named) == {"LD_PRELOAD": str(library), "MALLOC_CONF": JEMALLOC_CONF}
    assert allocator.jemalloc_environment({**named, "MALLOC_CONF": "narenas:2"})["MALLOC_CONF"] == "narenas:2"
    assert allocator.jemalloc_environment({**named, "LD_PRELOAD": "/usr/lib/libtcmalloc.so.4"}) == {}  # the user's own


class Relaunch:
    """``os.execve`` replaced: records what would have been started."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fails: bool = False) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []
        self.library = tmp_path / "libjemalloc.so.2"
        self.library.write_bytes(b"")
        for name in ("LD_PRELOAD", "MALLOC_CONF", allocator._RELAUNCHED):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CLINTUNE_MALLOC", str(self.library))
        monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-X", "utf8", "/venv/bin/clintune", "predict", "--input", "a.csv"])

        def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
            if fails:
                raise OSError("no such interpreter")
            self.calls.append((path, argv, env))

        monkeypatch.setattr(os, "execve", execve)


def test_relaunch_keeps_the_interpreter_its_flags_and_the_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    relaunch = Relaunch(monkeypatch, tmp_path)
    relaunch_under_jemalloc(["/venv/bin/clintune", "predict", "--input", "a.csv"])
    [(path, argv, env)] = relaunch.calls
    assert path == sys.executable
    assert argv == [sys.executable, "-X", "utf8", "/venv/bin/clintune", "predict", "--input", "a.csv"]
    assert (env["LD_PRELOAD"], env["MALLOC_CONF"]) == (str(relaunch.library), JEMALLOC_CONF)


def test_relaunch_leaves_a_preload_or_a_malloc_conf_the_user_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    relaunch = Relaunch(monkeypatch, tmp_path)
    monkeypatch.setenv("MALLOC_CONF", "narenas:2")
    relaunch_under_jemalloc(["clintune", "predict", "--input", "a.csv"])
    assert relaunch.calls[0][2]["MALLOC_CONF"] == "narenas:2"
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libtcmalloc.so.4")
    relaunch_under_jemalloc(["clintune", "predict", "--input", "a.csv"])
    assert len(relaunch.calls) == 1


@pytest.mark.parametrize("we_set_the_conf", [True, False])
def test_the_relaunched_run_puts_the_environment_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, we_set_the_conf: bool) -> None:
    relaunch = Relaunch(monkeypatch, tmp_path)
    if not we_set_the_conf:
        monkeypatch.setenv("MALLOC_CONF", "narenas:2")
    relaunch_under_jemalloc(["clintune", "predict", "--input", "a.csv"])
    [(_, _, env)] = relaunch.calls
    for name, value in env.items():  # now be the started process
        monkeypatch.setenv(name, value)
    relaunch_under_jemalloc(["clintune", "predict", "--input", "a.csv"])
    assert len(relaunch.calls) == 1  # it does not start itself a third time
    assert "LD_PRELOAD" not in os.environ and allocator._RELAUNCHED not in os.environ
    assert os.environ.get("MALLOC_CONF") == (None if we_set_the_conf else "narenas:2")


def test_a_failed_relaunch_runs_on_under_the_system_allocator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    Relaunch(monkeypatch, tmp_path, fails=True)
    relaunch_under_jemalloc(["clintune", "predict", "--input", "a.csv"])
    assert "running under the system allocator" in caplog.text


def test_a_missing_library_named_by_the_switch_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("predict", "--model", str(tmp_path), "--input", str(SECTION_CSV), "--output", str(tmp_path / "p.jsonl"),
                     env={"CLINTUNE_MALLOC": str(tmp_path / "missing.so")})
    assert result.returncode == 2
    assert f"CLINTUNE_MALLOC={tmp_path / 'missing.so'}: no such file" in result.stderr
    assert not (tmp_path / "p.jsonl").exists()


def test_predict_runs_under_jemalloc_with_the_answers_of_the_system_allocator(trained_models: dict[str, Path], tmp_path: Path) -> None:
    if jemalloc_library({}) is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("CI installs libjemalloc2 (.ci/run); it is missing")
        pytest.skip("no libjemalloc.so.2 on this machine (apt-get install libjemalloc2)")
    outputs = {}
    for name in ("jemalloc", "system"):
        outputs[name] = tmp_path / f"{name}.jsonl"
        env = {"CLINTUNE_MALLOC": "system"} if name == "system" else {}
        result = run_cli("predict", "--model", str(trained_models["section_header"]), "--input", str(SECTION_CSV),
                         "--output", str(outputs[name]), "--chunk-size", "7", env={**env, "LD_PRELOAD": ""})
        assert result.returncode == 0, result.stderr
        assert f"memory allocator: {name}" in result.stderr  # read by the run from its own /proc/self/maps
    same_records(read_jsonl(outputs["jemalloc"]), read_jsonl(outputs["system"]))
    assert len(read_jsonl(outputs["system"])) > 10


PURGE_PROBE = """
import ctypes, sys
from pathlib import Path
from clintune.inference.predictor import purge_jemalloc

def anon_mb():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("RssAnon"))
    return int(line.split()[1]) / 1024

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
blocks = [libc.malloc(1 << 20) for _ in range(200)]  # 200 MB in 1 MiB blocks, every page touched
for block in blocks:
    ctypes.memset(block, 1, 1 << 20)
for block in blocks:
    libc.free(ctypes.c_void_p(block))
kept = anon_mb()
purged = purge_jemalloc()
print(kept, anon_mb(), purged)
"""


def test_the_purge_hands_back_what_jemalloc_kept_after_frees() -> None:
    """A Ray model actor purges after each batch; here 200 MB freed stays resident under decay off until purged."""
    library = jemalloc_library()
    if library is None:
        pytest.skip("no libjemalloc.so.2 on this machine (apt-get install libjemalloc2)")
    import subprocess

    env = {**os.environ, "LD_PRELOAD": str(library), "MALLOC_CONF": JEMALLOC_CONF}
    kept, after, purged = subprocess.run([sys.executable, "-c", PURGE_PROBE], env=env, capture_output=True, text=True,
                                         check=True).stdout.split()
    assert purged == "True"
    assert float(kept) - float(after) > 150, (kept, after)  # the kernel's count, not jemalloc's own
    # without jemalloc there is nothing to purge, and it says so
    plain = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    assert subprocess.run([sys.executable, "-c", "from clintune.inference.predictor import purge_jemalloc; print(purge_jemalloc())"],
                          env=plain, capture_output=True, text=True, check=True).stdout.strip() == "False"
