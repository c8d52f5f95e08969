"""Report figures (PNG): confusion matrix, ROC and precision-recall curves, reliability diagram,
and a search's history and parameter importances.

Figures are built with matplotlib's object API on the Agg canvas, so no
display or GUI backend is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _set_title(axes: Any, title: str, fontsize: float = 10, **options: Any) -> None:
    """``title`` wrapped to the width of its figure (a rule's description is longer than a plot is wide)."""
    import textwrap

    # characters of about 0.55 em over the axes, which leave a quarter of the figure to labels and colour bars
    width = 0.75 * axes.figure.get_figwidth() * 72 / (fontsize * 0.55)
    lines = [wrapped for line in title.split("\n") for wrapped in textwrap.wrap(line, int(width)) or [""]]
    axes.set_title("\n".join(lines), fontsize=fontsize, **options)


def confusion_matrix_figure(
    gold: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...], title: str, positive: int | None = None
) -> Any:
    """Counts of gold (rows) against predicted (columns) classes, with class names.

    The colour scale starts at zero, every cell shows its count (zeros too) in
    black or white, whichever contrasts more with the cell. For a binary model
    (``positive`` given) the cells are also named: missed positives, false
    alarms, true positives and negatives.
    """
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(gold, predicted, labels=list(range(len(classes))))
    size = max(4.0, 0.45 * len(classes) + 2.5)
    figure = _figure(size + 1, size)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max(initial=0)), 1))
    figure.colorbar(image, ax=axes, shrink=0.8, label="examples")
    axes.set_xticks(range(len(classes)), labels=classes, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(classes)), labels=classes, fontsize=8)
    named = positive is not None and len(classes) == 2
    axes.set_xlabel(f"predicted class (positive: {classes[positive]})" if named else "predicted class")
    axes.set_ylabel("gold class")
    _set_title(axes, title)
    names = binary_cell_names(positive) if named else {}
    fontsize = 11 if len(classes) <= 4 else 9 if len(classes) <= 10 else 7
    for (row, column), count in np.ndenumerate(matrix):
        label = str(count) + (f"\n{names[row, column]}" if names else "")
        axes.text(column, row, label, ha="center", va="center", fontsize=fontsize,
                  color=readable_text_colour(image.to_rgba(count)))
    return figure


def binary_cell_names(positive: int) -> dict[tuple[int, int], str]:
    """(gold, predicted) cell -> what its examples are, for a binary model with class ``positive``."""
    negative = 1 - positive
    return {
        (positive, positive): "true positives",
        (positive, negative): "missed positives",
        (negative, positive): "false alarms",
        (negative, negative): "true negatives",
    }


def readable_text_colour(background: tuple[float, ...]) -> str:
    """Black or white, whichever has the higher WCAG contrast ratio against ``background`` (RGB(A), 0-1)."""
    background_luminance = _relative_luminance(background[:3])
    on_black = (background_luminance + 0.05) / 0.05
    on_white = 1.05 / (background_luminance + 0.05)
    return "black" if on_black >= on_white else "white"


def _relative_luminance(rgb: tuple[float, ...]) -> float:
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def roc_figure(is_positive: np.ndarray, scores: np.ndarray, threshold: float, positive: str, rule: str = "") -> Any:
    """ROC curve with AUC, marking the operating point of the decision threshold."""
    from sklearn.metrics import roc_auc_score, roc_curve

    false_positive_rate, true_positive_rate, thresholds = roc_curve(is_positive, scores)
    figure = _figure(5, 4.5)
    axes = figure.add_subplot()
    axes.plot(false_positive_rate, true_positive_rate, label=f"AUC = {roc_auc_score(is_positive, scores):.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    point = _operating_point(thresholds, threshold)
    axes.scatter([false_positive_rate[point]], [true_positive_rate[point]], color="red", zorder=3, label=f"threshold {threshold:.3g}")
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel(f"true positive rate (recall of {positive})")
    _set_title(axes, f"ROC curve, positive class {positive}" + (f"\nmarked: {rule}" if rule else ""))
    axes.legend(loc="lower right")
    return figure


def precision_recall_figure(is_positive: np.ndarray, scores: np.ndarray, threshold: float, positive: str, rule: str = "") -> Any:
    """Precision-recall curve with average precision, marking the decision threshold."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(is_positive, scores)
    figure = _figure(5, 4.5)
    axes = figure.add_subplot()
    axes.plot(recall, precision, label=f"average precision = {average_precision_score(is_positive, scores):.3f}")
    point = _operating_point(thresholds, threshold, descending=False)
    axes.scatter([recall[point]], [precision[point]], color="red", zorder=3, label=f"threshold {threshold:.3g}")
    axes.set_xlabel(f"recall of {positive}")
    axes.set_ylabel(f"precision of {positive}")
    axes.set_ylim(0, 1.02)
    _set_title(axes, f"Precision-recall curve, positive class {positive}" + (f"\nmarked: {rule}" if rule else ""))
    axes.legend(loc="lower left")
    return figure


def _operating_point(thresholds: np.ndarray, threshold: float, descending: bool = True) -> int:
    reached = np.where(thresholds >= threshold)[0]
    if descending:
        return int(reached[-1]) if len(reached) else 0
    return int(reached[0]) if len(reached) else len(thresholds) - 1


def reliability_figure(calibration: dict[str, Any]) -> Any:
    """Accuracy against confidence per bin (the diagonal is perfect calibration), and below it
    how many examples each bin holds, so that a bar of three examples is not read like one of three hundred."""
    figure = _figure(5, 5.5)
    axes, counts_axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    bins = calibration["bins"]
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    width = 0.9 / calibration["n_bins"]
    axes.bar(centres, [b["accuracy"] for b in bins], width=width, alpha=0.7, label="accuracy in bin")
    axes.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="black",
              label="(confidence, accuracy) of bin")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfect calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_ylabel("accuracy")
    verdict = calibration.get("verdict")
    _set_title(axes, f"Reliability diagram, ECE = {calibration['ece']:.3f}" + (f"\nthe model is {verdict}" if verdict else ""),
               pad=20)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, fontsize=8, frameon=False)  # above the bars, never on them
    counts = [b["count"] for b in bins]
    bars = counts_axes.bar(centres, counts, width=width, color="grey")
    counts_axes.bar_label(bars, labels=[str(c) for c in counts], fontsize=8, padding=2)
    counts_axes.set_ylim(0, max(counts, default=1) * 1.35)
    counts_axes.set_ylabel("examples")
    counts_axes.set_xlabel("confidence (probability of the predicted class)")
    return figure


def search_history_figure(numbers: list[int], values: list[float], metric: str, higher_is_better: bool,
                          pruned: list[tuple[int, float]] | None = None) -> Any:
    """Each complete trial's objective by trial number, the best value found so far as a step line, and
    the pruned trials at the last value they reported."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(6, 4)
    axes = figure.subplots()
    axes.plot(numbers, values, "o", color="tab:blue", label=f"complete trial's {metric}")
    best = np.maximum.accumulate(values) if higher_is_better else np.minimum.accumulate(values)
    axes.step(numbers, best, where="post", color="tab:red", label="best so far")
    if pruned:
        axes.plot([n for n, _ in pruned], [v for _, v in pruned], "x", color="grey", label="pruned (last reported value)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("trial")
    axes.set_ylabel(metric)
    axes.set_title(f"Search history: {len(values)} complete, {len(pruned or [])} pruned trials")
    axes.legend(loc="best", fontsize=8)
    return figure


def importance_figure(importances: dict[str, float]) -> Any:
    """How much of the objective's variation each searched setting explains (Optuna's fANOVA), largest on top."""
    names = list(importances)[::-1]
    figure = _figure(6, 1.2 + 0.45 * len(names))
    axes = figure.subplots()
    bars = axes.barh(names, [importances[name] for name in names], color="tab:blue")
    axes.bar_label(bars, labels=[f"{importances[name]:.2f}" for name in names], fontsize=8, padding=2)
    axes.set_xlim(0, 1.1)
    axes.set_xlabel("importance (share of the objective's variance)")
    axes.set_title("Parameter importances")
    return figure


def per_label_f1_figure(per_class: dict[str, dict[str, Any]], title: str) -> Any:
    """Multi-label: each label's F1 as a bar, most supported label on top, its support and threshold printed
    beside the bar, so that 50 labels stay readable and rare labels' F1 is seen next to how few they are."""
    rows = sorted(per_class.items(), key=lambda item: -item[1]["support"])[::-1]  # barh draws bottom-up
    figure = _figure(7.5, 1.4 + 0.28 * len(rows))
    axes = figure.subplots()
    names = [label if len(label) <= 40 else label[:39] + "…" for label, _ in rows]
    bars = axes.barh(range(len(rows)), [row["f1"] for _, row in rows], color="tab:blue")
    axes.set_yticks(range(len(rows)), names, fontsize=8)
    axes.bar_label(bars, labels=[f"{row['f1']:.2f}  (n={row['support']}, t={row['threshold']:.2f})" for _, row in rows],
                   fontsize=7, padding=2)
    axes.set_xlim(0, 1.35)
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    axes.set_xlabel("F1 (n: gold support, t: the label's threshold)")
    _set_title(axes, title)
    return figure


def save(figure: Any, path: Path) -> None:
    figure.savefig(path, format="png")
