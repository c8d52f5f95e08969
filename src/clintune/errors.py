"""The exception family that clintune raises for problems a user can fix.

The CLI turns any ``ClintuneError`` into a plain message and exit status 2;
every other exception is a bug and keeps its traceback (exit status 1).
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_LISTED = 5  # a message names this many rows, files or labels, then says how many more


def listed(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """'a, b and 3 more': the first ``limit`` items and how many others, for messages."""
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


class ClintuneError(Exception):
    """A problem with the user's input: config, data or model folder."""

    exit_code = 2


class ConfigError(ClintuneError):
    """The config is malformed or names invalid values; lists every problem."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        noun = "problem" if len(problems) == 1 else "problems"
        lines = [f"{len(problems)} config {noun}{where}:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class DataError(ClintuneError):
    """A data file is missing, unreadable or holds rows that cannot be used."""


class ModelFolderError(ClintuneError):
    """A model folder is missing files or its files disagree."""


class HardwareError(ClintuneError):
    """The requested device or precision is not available on this machine."""
