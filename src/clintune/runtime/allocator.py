"""The memory allocator of a long ``clintune predict --input`` run: jemalloc where the system has it.

A PyTorch run over a large file, one chunk after another, grows under glibc's malloc: each
batch's tensors have a different shape, and glibc keeps the freed memory in fragments it cannot
reuse. MiniLM on MTS-Dialog dialogues, 2 cores: peak 2.00 GB after 10,000 texts and 2.23 GB
after 100,000, even with the freed heap handed back after each chunk. Under jemalloc with its
decay off (memory it frees is kept for reuse, never handed back) the same 10,000 texts peak at
0.85 GB, and the run is no slower.

The allocator is chosen when a process starts (``LD_PRELOAD``), so ``clintune predict --input``
(the local engine) starts itself again under jemalloc when it finds the library
(Debian/Ubuntu: ``apt-get install libjemalloc2``). ``CLINTUNE_MALLOC=system`` keeps the system
allocator; ``CLINTUNE_MALLOC=/path/to/libjemalloc.so.2`` names the library. ``--engine ray``
starts its model actors with the same preload (``jemalloc_environment``).

glibc's own settings trade speed for that memory (10,000 texts, same run): a fixed mmap threshold
of 1 MiB peaked at 0.80 GB but predicted 52.7 texts/s against 85.2; 8 MiB, 1.08 GB at 62.8 texts/s;
one arena, 1.90 GB at 82.6. So none is set: jemalloc is the fix.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from clintune.errors import ClintuneError

SWITCH = "CLINTUNE_MALLOC"
# Decay off: freed pages stay with jemalloc for the next batch instead of going back to the system
# and being faulted in again (with jemalloc's default 10 s decay the 10,000 texts took 44% longer).
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
_RELAUNCHED = "_CLINTUNE_ALLOCATOR_SET"
_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def wants_jemalloc(args: Sequence[str]) -> bool:
    """Whether these command-line arguments (after the program name) run a file through the local engine."""
    args = list(args)
    while args and args[0] == "--verbose":  # the app's one option before the verb
        args = args[1:]
    if not args or args[0] != "predict":
        return False
    reads_a_file = any(arg in ("--input", "-i") or arg.startswith(("--input=", "-i")) for arg in args[1:])
    on_ray = any(arg == "--engine=ray" or (arg == "--engine" and following == "ray") for arg, following in zip(args, [*args[1:], ""]))
    return reads_a_file and not on_ray


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
    means none. Used for this command's own restart and for the actors of ``--engine ray``, which
    Ray starts with these variables (``runtime_env``)."""
    if environ.get("LD_PRELOAD"):
        return {}
    library = jemalloc_library(environ)
    if library is None:
        return {}
    return {"LD_PRELOAD": str(library), "MALLOC_CONF": environ.get("MALLOC_CONF", JEMALLOC_CONF)}


def relaunch_under_jemalloc(argv: Sequence[str]) -> None:
    """Start this command again under jemalloc when it predicts a file and the library is there; else return.

    The same interpreter runs the same command line (``sys.orig_argv``: its flags kept), in the same
    process (``execve``: same PID, signals and exit status). A preload the user set is left alone. In
    the started process the environment is put back as it was, so nothing it starts inherits the preload."""
    if os.environ.get(_RELAUNCHED):
        _restore_environment()
        return
    if not sys.platform.startswith("linux") or not wants_jemalloc(argv[1:]):
        return
    preload = jemalloc_environment()  # none when the user set a preload or there is no library
    if not preload:
        return
    env = {**os.environ, **preload, _RELAUNCHED: "conf" if "MALLOC_CONF" not in os.environ else "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as exc:  # carry on under the system allocator
        logging.getLogger(__name__).warning("could not start again under jemalloc (%s); running under the system allocator", exc)


def _restore_environment() -> None:
    set_conf = os.environ.pop(_RELAUNCHED) == "conf"
    os.environ.pop("LD_PRELOAD", None)
    if set_conf:
        os.environ.pop("MALLOC_CONF", None)


def allocator_in_use() -> str:
    """``jemalloc`` when this process has it loaded, else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "jemalloc" if "libjemalloc" in maps else "system"
