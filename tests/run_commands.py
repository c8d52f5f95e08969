"""Run several ``clintune`` commands one after another in one Python process (``tests/test_readme.py``).

Reads a JSON list of argument lists from stdin; each runs as ``clintune.cli.main`` runs for the ``clintune``
command, with the logging settings and environment it changes put back before the next. Stops at the first
command that does not exit 0, printing ``clintune command N exited with CODE`` on stderr, and exits 1.
Paying Python's and the libraries' start-up once per block rather than once per command is what keeps
the docs' dozens of commands affordable in the suite; ``tests/test_cli*.py`` run the real console script.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings


def call_main(words: list[str]) -> int:
    """``clintune.cli.main`` on these arguments, as the ``clintune`` command runs it; its exit status. The logging
    settings, environment and ``sys.argv`` it changes are put back afterwards (``conftest.invoke_cli`` uses it too)."""
    from clintune.cli import main

    ours, root = logging.getLogger("clintune"), logging.getLogger()
    saved = (list(ours.handlers), ours.level, ours.propagate, root.level, dict(os.environ), sys.argv)
    try:
        with warnings.catch_warnings():
            sys.argv = ["clintune", *words]
            try:
                main()
            except SystemExit as exit_:
                return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            return 0
    finally:
        ours.handlers, ours.level, ours.propagate = saved[0], saved[1], saved[2]
        root.setLevel(saved[3])
        os.environ.clear()
        os.environ.update(saved[4])
        sys.argv = saved[5]


def run(commands: list[list[str]]) -> int:
    for number, words in enumerate(commands):
        print(f"clintune command {number}: {' '.join(words)}", file=sys.stderr, flush=True)
        code = call_main(words)
        sys.stdout.flush()
        if code != 0:
            print(f"clintune command {number} exited with {code}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(json.load(sys.stdin)))
