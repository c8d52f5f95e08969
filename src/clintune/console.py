"""Console rendering of metrics and predictions, for people to read."""

from __future__ import annotations

from typing import Any

HEADLINE_KEYS = ("accuracy", "precision", "recall", "f1", "f1_micro", "f1_macro", "f1_weighted", "f1_samples", "precision_micro",
                 "recall_micro", "precision_at_5", "recall_at_5", "subset_accuracy", "roc_auc", "threshold")


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table; the first column is left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        parts = [str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def format_metrics(metrics: dict[str, Any]) -> str:
    """Headline numbers, then the per-class table."""
    lines = []
    intervals = metrics.get("confidence_intervals", {})
    headline = [(k, metrics[k]) for k in HEADLINE_KEYS if metrics.get(k) is not None]
    if headline:
        rows = [[k, f"{v:.4f}", _interval(intervals.get(k))] for k, v in headline]
        lines.append(format_table(["metric", "value", "95% CI"] if intervals else ["metric", "value"],
                                  rows if intervals else [r[:2] for r in rows]))
    per_class = metrics.get("per_class") or {}
    if per_class:
        overlap = all("overlap_f1" in row for row in per_class.values())
        thresholds = all("threshold" in row for row in per_class.values())  # multi-label: most supported first
        items = sorted(per_class.items(), key=lambda item: -item[1]["support"]) if thresholds else per_class.items()
        rows = [
            [label, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}"]
            + ([f"{row['overlap_f1']:.3f}"] if overlap else []) + [str(row["support"])]
            + ([f"{row['threshold']:.3g}"] if thresholds else [])
            for label, row in items
        ]
        lines.append("")
        lines.append(format_table(["class", "precision", "recall", "f1"] + (["overlap f1"] if overlap else []) + ["support"]
                                  + (["threshold"] if thresholds else []), rows))
    notes = []
    if metrics.get("decision_rule"):
        notes.append(f"decision rule: {metrics['decision_rule']}")
    if metrics.get("ece") is not None:
        notes.append(f"expected calibration error: {metrics['ece']:.4f}")
    if isinstance(metrics.get("overlap"), dict):
        lenient = metrics["overlap"]
        notes.append(f"overlap (an entity counts when it shares a word with one of its type): precision {lenient['precision']:.4f}, "
                     f"recall {lenient['recall']:.4f}, f1 {lenient['f1']:.4f}")
    if metrics.get("errors"):
        notes.append("entity errors: " + ", ".join(f"{k} {v}" for k, v in metrics["errors"].items()))
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


def _interval(interval: dict[str, float] | None) -> str:
    return f"{interval['low']:.3f}-{interval['high']:.3f}" if interval else ""


COMPARED_KEYS = ("accuracy", "precision", "recall", "f1", "f1_micro", "f1_macro", "f1_weighted", "f1_samples", "precision_at_5",
                 "recall_at_5", "subset_accuracy", "roc_auc", "classes_predicted")


def format_comparison(columns: dict[str, dict[str, Any]]) -> str:
    """Headline metrics side by side, one column per model (a missing value is blank)."""
    keys = [k for k in COMPARED_KEYS if any(isinstance(c.get(k), (int, float)) for c in columns.values())]
    rows = [[key, *(_cell(c.get(key)) for c in columns.values())] for key in keys]
    return format_table(["metric", *columns], rows)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def format_rule_cost(tuned: dict[str, Any], default: dict[str, Any]) -> str:
    """Every class's recall and precision under the default rule and under the tuned rule, on one split."""
    rows = []
    for label, ours in tuned.get("per_class", {}).items():
        plain = default.get("per_class", {}).get(label)
        if plain:
            rows.append([label, f"{plain['recall']:.3f} -> {ours['recall']:.3f}", f"{plain['precision']:.3f} -> {ours['precision']:.3f}"])
    for group, ours in tuned.get("per_group", {}).items():  # "serious or worse": a member caught as any member counts
        plain = default.get("per_group", {}).get(group)
        if plain:
            rows.append([f"{group} (group)", f"{plain['recall']:.3f} -> {ours['recall']:.3f}",
                         f"{plain['precision']:.3f} -> {ours['precision']:.3f}"])
    for key in ("f1_micro", "f1_macro", "f1", "accuracy"):
        if isinstance(tuned.get(key), float) and isinstance(default.get(key), float):
            rows.append([key, f"{default[key]:.3f} -> {tuned[key]:.3f}", ""])
    return format_table(["default rule -> rule in force", "recall", "precision"], rows)


def format_search(summary: dict[str, Any], output: str) -> str:
    """A search's outcome: trials by state, the best trial's settings and objective, where the ready config is."""
    states = ", ".join(f"{count} {state}" for state, count in sorted(summary["trials"].items()))
    lines = [f"study {summary['study']!r}: {states} (objective: {summary['objective']}, {summary['direction']})"]
    best = summary.get("best")
    if best is None:
        lines.append("no trial completed, so there is no best setting yet")
        return "\n".join(lines)
    lines += [f"best: trial {best['trial']}, {summary['metric']} {best['value']:.4f}",
              format_table(["setting", "value"], [[key, str(value)] for key, value in best["settings"].items()])]
    if summary.get("importances"):
        lines.append("importances: " + ", ".join(f"{key} {value:.2f}" for key, value in summary["importances"].items()))
    lines.append(f"config with these settings: {output}/best.yaml (clintune train {output}/best.yaml)")
    return "\n".join(lines)


def format_cross_validation(report: dict[str, Any]) -> str:
    """Each metric across folds (mean, standard deviation, 95% corrected interval of the mean) beside the pooled value."""
    summary, pooled = report["summary"], report["pooled"]
    keys = [k for k in HEADLINE_KEYS if k in summary and k != "threshold"]
    rows = [[key, f"{summary[key]['mean']:.4f}", f"{summary[key]['std']:.4f}",
             f"{summary[key]['low']:.3f}-{summary[key]['high']:.3f}", _cell(pooled.get(key))] for key in keys]
    lines = [f"{len(report['folds'])}-fold cross-validation of {report['data']}:",
             format_table(["metric", "mean", "std", "95% CI (folds)", "pooled out-of-fold"], rows)]
    per_class = summary.get("per_class", {})
    if per_class:
        lines += ["", format_table(["class", "f1 mean", "f1 std", "95% CI (folds)"], [
            [label, f"{row['f1']['mean']:.3f}", f"{row['f1']['std']:.3f}", f"{row['f1']['low']:.3f}-{row['f1']['high']:.3f}"]
            for label, row in per_class.items()])]
    if report.get("interval"):
        lines += ["", f"intervals: {report['interval']}"]
    if report.get("decision"):
        lines += ["", f"decision rule tuned on the out-of-fold predictions: {report['decision']['rule']}"]
    return "\n".join(lines)
