"""The C library's heap in a long run: what finished batches freed goes back to the system.

PyTorch gives every batch tensors of its own shape. glibc's ``malloc`` keeps what one batch freed in
pieces that the next batch's shapes often do not fit, so a run over a large file grows from batch to
batch, in memory the process no longer uses. ``HeapTrim``, called after each batch, hands those pages
back (``malloc_trim``) whenever the process has grown ``slack`` bytes above its size after the last
hand-back. Memory then follows the batch, not the number of texts, and handing back only now and then
keeps the cost of faulting the pages in again small (figures: docs/benchmarks.md, "Prediction at scale";
why: docs/explanation/memory.md).

jemalloc, which a user may start clintune under (``LD_PRELOAD``, docs/how-to/predict-corpus.md), keeps
its freed pages for reuse and needs none of this; ``--engine ray`` starts its model actors under it where
the machine has the library (``jemalloc_environment``), and each actor purges after its batch
(``purge_jemalloc``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path

from clintune.errors import ClintuneError

SWITCH = "CLINTUNE_MALLOC"
# Decay off: freed pages stay with jemalloc for the next batch instead of going back to the system
# and being faulted in again.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
# Growth above the size after the last hand-back that starts the next one: small enough that a long run
# stays within this of its working size, large enough that most batches reuse pages already in place.
TRIM_SLACK_BYTES = 128 << 20
_ALL_ARENAS = 4096  # jemalloc's MALLCTL_ARENAS_ALL
_PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")  # allocators a user may start a process under


def resident_bytes() -> int | None:
    """This process's resident memory (the kernel's count, ``/proc/self/statm``), or None where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_freed_memory() -> None:
    """Hand the pages of glibc's freed heap back to the system (``malloc_trim``; elsewhere nothing to do)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return
    trim(0)


class HeapTrim:
    """Call after each batch: hands glibc's freed heap back once the process has grown ``slack`` bytes
    above its size after the previous hand-back (the first call hands back and sets that size).
    Does nothing under another allocator (jemalloc, say), or where the kernel does not count resident memory."""

    def __init__(self, slack: int = TRIM_SLACK_BYTES) -> None:
        self.slack = slack
        self.after_last: int | None = None
        self.active = allocator_in_use() == "system" and resident_bytes() is not None
        self.hand_backs = 0

    def __call__(self) -> None:
        if not self.active:
            return
        size = resident_bytes()
        if size is None or (self.after_last is not None and size - self.after_last <= self.slack):
            return
        release_freed_memory()
        self.hand_backs += 1
        self.after_last = resident_bytes()


def purge_jemalloc() -> bool:
    """Hand the pages jemalloc keeps after frees back to the system, all arenas at once; False when not under jemalloc.

    clintune's jemalloc setting (``JEMALLOC_CONF``) keeps freed pages for the next batch. In a Ray model
    actor those kept pages grew batch after batch, where jemalloc's decay kept them flat but slowed
    PyTorch (docs/benchmarks.md, "Ray"); one purge after each batch bounds them to what one batch needs."""
    try:
        mallctl = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):  # another allocator
        return False
    return mallctl(f"arena.{_ALL_ARENAS}.purge".encode(), None, None, None, ctypes.c_size_t(0)) == 0


def jemalloc_library(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path | None:
    """The jemalloc library to preload: as ``CLINTUNE_MALLOC`` names it, else the system's, else none."""
    choice = environ.get(SWITCH, "")
    if choice == "system":
        return None
    if choice:
        path = Path(choice)
        if not path.is_file():
            raise ClintuneError(f"{SWITCH}={choice}: no such file\n"
                                f"  fix: name a jemalloc library (libjemalloc.so.2), or set {SWITCH}=system")
        return path
    return next((Path(d) / "libjemalloc.so.2" for d in _LIBRARY_DIRS if (Path(d) / "libjemalloc.so.2").is_file()), None)


def jemalloc_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    """The variables that start a process under jemalloc (``LD_PRELOAD``, ``MALLOC_CONF``), or none without the library.

    A ``MALLOC_CONF`` already set is kept, and a preload the user set (``LD_PRELOAD``: tcmalloc, say)
    means none. ``--engine ray`` starts its actors with these variables (``runtime_env``); a user can
    start any clintune command with them (docs/how-to/predict-corpus.md)."""
    if environ.get("LD_PRELOAD"):
        return {}
    library = jemalloc_library(environ)
    if library is None:
        return {}
    return {"LD_PRELOAD": str(library), "MALLOC_CONF": environ.get("MALLOC_CONF", JEMALLOC_CONF)}


@functools.cache  # chosen when the process started; every Predictor's HeapTrim asks
def allocator_in_use() -> str:
    """``jemalloc`` (or ``tcmalloc``, ``mimalloc``) when this process has it loaded, else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return next((name for name in _PRELOADED if f"lib{name}" in maps), "system")
