"""The progress bar of long work (tqdm, to stderr): texts done of the total, texts/s and the time left."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int, *, show: bool, done: int = 0, leave: bool = True, what: str = "predicting") -> Any:
    """A bar over ``total`` texts, starting at ``done``; a stand-in that ignores updates when not shown.

    Counts may be fractional (a text split into windows reports each window's share); the bar shows whole texts.
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=what, unit="text", leave=leave, disable=not show, smoothing=0.05,
                dynamic_ncols=True, mininterval=0.5, bar_format="{l_bar}{bar}| {n:.0f}/{total} [{elapsed}<{remaining}, {rate_fmt}]")
