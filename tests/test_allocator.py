"""The C library's heap during prediction: handed back under glibc as a run grows; jemalloc as an opt-in, same answers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_predict_stream import read_jsonl, same_records

from clintune.errors import ClintuneError
from clintune.runtime import allocator
from clintune.runtime.allocator import JEMALLOC_CONF, HeapTrim, allocator_in_use, jemalloc_library

SECTION_CSV = REPO / "data" / "section_header" / "test.csv"


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


FRAGMENT_PROBE = """
import ctypes, json
from pathlib import Path
from clintune.runtime.allocator import HeapTrim

def rss_mb():  # the kernel's count, read apart from the code under test
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
kept = []

def fragment(mb):
    # mb MB in 4 KB blocks, every page touched; all but every 64th freed, so the freed runs lie between
    # blocks still held (and the last held block pins the top of the heap): glibc keeps them resident
    blocks = [libc.malloc(4096) for _ in range(mb * 256)]
    for block in blocks:
        ctypes.memset(block, 1, 4096)
    for i, block in enumerate(blocks):
        if i % 64:
            libc.free(block)
        else:
            kept.append(block)

def hold(mb):  # memory in use: the size the next hand-back is measured from grows with it
    for _ in range(mb * 256):
        block = libc.malloc(4096)
        ctypes.memset(block, 1, 4096)
        kept.append(block)

trim = HeapTrim(slack=64 << 20)
steps = []
trim()  # the first call hands back and notes the size
steps.append(("first", trim.hand_backs, rss_mb(), rss_mb()))
fragment(24)  # grown by less than the slack: kept for reuse
before = rss_mb(); trim(); steps.append(("small", trim.hand_backs, before, rss_mb()))
fragment(160)  # grown by more: handed back
hold(48)
before = rss_mb(); trim(); steps.append(("large", trim.hand_backs, before, rss_mb()))
fragment(24)  # measured from the size after that hand-back (48 MB more in use), not from the first
before = rss_mb(); trim(); steps.append(("again", trim.hand_backs, before, rss_mb()))
print(json.dumps({"active": trim.active, "steps": steps}))
"""


def _probe(code: str, env: dict[str, str] | None = None) -> str:
    import subprocess

    plain = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    return subprocess.run([sys.executable, "-c", code], env={**plain, **(env or {})}, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap and /proc")
def test_the_heap_is_handed_back_once_the_process_has_grown_by_the_slack() -> None:
    """Prediction calls ``HeapTrim`` after each batch: pages glibc keeps after frees go back to the system
    only once they add up to more than the slack, so most batches reuse pages already in place."""
    import json

    result = json.loads(_probe(FRAGMENT_PROBE))
    assert result["active"] is True
    steps = {name: (hand_backs, before, after) for name, hand_backs, before, after in result["steps"]}
    assert steps["first"][0] == 1
    hand_backs, before, after = steps["small"]
    assert hand_backs == 1 and before - after < 4, steps  # 24 MB freed and left resident
    hand_backs, before, after = steps["large"]
    assert hand_backs == 2 and before - after > 90, steps  # about 181 MB freed, 48 MB of it taken again by what is held
    assert after - steps["first"][2] > 40, steps  # the 48 MB held
    hand_backs, before, after = steps["again"]
    assert hand_backs == 2 and before - after < 4, steps


def test_there_is_nothing_to_hand_back_under_jemalloc() -> None:
    library = jemalloc_library({})
    if library is None:
        pytest.skip("no libjemalloc.so.2 on this machine (apt-get install libjemalloc2)")
    code = "from clintune.runtime.allocator import HeapTrim; print(HeapTrim().active)"
    assert _probe(code, {"LD_PRELOAD": str(library), "MALLOC_CONF": JEMALLOC_CONF}).strip() == "False"
    assert _probe(code).strip() == ("True" if sys.platform.startswith("linux") else "False")


def test_prediction_checks_the_heap_after_every_batch(trained_models: dict[str, Path]) -> None:
    from clintune.inference.predictor import Predictor, length_batches

    predictor = Predictor.from_folder(trained_models["section_header"], batch_size=4)
    assert isinstance(predictor.trim_heap, HeapTrim)
    assert predictor.trim_heap.active is (sys.platform.startswith("linux") and allocator_in_use() == "system")
    checks: list[int] = []
    predictor.trim_heap = lambda: checks.append(1)  # type: ignore[assignment,method-assign]
    texts = [f"Doctor: how long {'has it hurt ' * (i % 9)}? Patient: since {i} days." for i in range(30)]
    encoded = predictor.tokenizer(texts, truncation=True, max_length=predictor.config.model.max_length)
    features = [{"input_ids": ids, "attention_mask": mask} for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])]
    predictor.logits(features)
    assert len(checks) == len(length_batches([len(f["input_ids"]) for f in features], 4)) > 7


def _vm_rss() -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS"))
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="reads resident memory from /proc")
def test_release_freed_memory_gives_freed_heap_back_to_the_system() -> None:
    # 2,000 blocks of 100 kB sit on the heap (below glibc's mmap threshold); freeing all but the last
    # leaves them resident, because the last one pins the top of the heap. Trimming returns them.
    from clintune.runtime.allocator import allocator_in_use, release_freed_memory, resident_bytes

    if allocator_in_use() != "system":
        pytest.skip("glibc's heap only: this process runs under another allocator")
    blocks = [bytes(100_000) for _ in range(2000)]
    last = blocks[-1]
    del blocks
    before = _vm_rss()
    assert abs(resident_bytes() - before) < 20_000_000  # type: ignore[operator]  # the same count as the kernel's VmRSS
    release_freed_memory()
    assert before - _vm_rss() > 100_000_000
    assert len(last) == 100_000


def test_predict_started_under_jemalloc_gives_the_answers_of_the_system_allocator(trained_models: dict[str, Path],
                                                                                   tmp_path: Path) -> None:
    """The opt-in of docs/how-to/predict-corpus.md: the same command with jemalloc preloaded."""
    library = jemalloc_library({})
    if library is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("CI installs libjemalloc2 (.ci/run); it is missing")
        pytest.skip("no libjemalloc.so.2 on this machine (apt-get install libjemalloc2)")
    outputs = {}
    for name in ("jemalloc", "system"):
        outputs[name] = tmp_path / f"{name}.jsonl"
        env = {"LD_PRELOAD": str(library), "MALLOC_CONF": JEMALLOC_CONF} if name == "jemalloc" else {"LD_PRELOAD": ""}
        result = run_cli("predict", "--model", str(trained_models["section_header"]), "--input", str(SECTION_CSV),
                         "--output", str(outputs[name]), "--chunk-size", "7", env=env)
        assert result.returncode == 0, result.stderr
        # read by the run from its own /proc/self/maps: without the preload, nothing restarts it under jemalloc
        assert f"memory allocator: {name}" in result.stderr
    same_records(read_jsonl(outputs["jemalloc"]), read_jsonl(outputs["system"]))
    assert len(read_jsonl(outputs["system"])) > 10


PURGE_PROBE = """
import ctypes, sys
from pathlib import Path
from clintune.runtime.allocator import purge_jemalloc

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
    kept, after, purged = _probe(PURGE_PROBE, {"LD_PRELOAD": str(library), "MALLOC_CONF": JEMALLOC_CONF}).split()
    assert purged == "True"
    assert float(kept) - float(after) > 150, (kept, after)  # the kernel's count, not jemalloc's own
    # without jemalloc there is nothing to purge, and it says so
    assert _probe("from clintune.runtime.allocator import purge_jemalloc; print(purge_jemalloc())").strip() == "False"
