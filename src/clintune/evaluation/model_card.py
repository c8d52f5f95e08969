"""The model card (``README.md``) of a model folder, rendered from the folder's own files.

It is written by ``train``, rewritten whenever ``eval`` changes the
folder's decision rule, and rewritten by ``export`` for the ONNX folder, so its
numbers are always those of ``metrics.json``, ``decision.json`` and
``export.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from clintune.data.labels import LabelEncoder
from clintune.evaluation.figures import FigureSet, figures_in_force
from clintune.modeling.decision import DecisionRule
from clintune.modeling.folder import EXPORT_FILE, ONNX_FILE

CARD_FILE = "README.md"
RUN_FILE = "run.json"

HEADLINES = {
    "binary": ("f1", "precision", "recall", "accuracy"),
    "multiclass": ("f1_macro", "accuracy"),
    "multilabel": ("f1_micro", "f1_macro", "f1_samples", "precision_micro", "recall_micro", "precision_at_5", "recall_at_5",
                   "subset_accuracy"),
    "ner": ("f1", "precision", "recall"),
}
PURPOSE = {
    "binary": "Flags whether a proposed diagnosis is consistent with the documented findings ({labels}).",
    "multiclass": "Assigns one of {n} classes ({labels}) to a text.",
    "multilabel": "Codes a text with every one of {n} labels that applies ({labels}): none, one or several.",
    "ner": "Marks entity mentions ({labels}) in text, with character offsets.",
}


def render_model_card(folder: Path, published: Path | None = None) -> str:
    """Markdown describing the model in ``folder``: task, data, config, metrics, use, reproduction.

    ``published`` is where the folder will be found when the card is written
    in a staging folder (default: ``folder`` itself); the card's commands name it.
    An ONNX folder's card says so and reports the check made at export.
    """
    published = (published or folder).absolute()
    export = _export_info(folder)
    config = yaml.safe_load((folder / "clintune.yaml").read_text(encoding="utf-8"))
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    run = json.loads((folder / RUN_FILE).read_text(encoding="utf-8")) if (folder / RUN_FILE).is_file() else {}
    encoder = LabelEncoder.load(folder)
    rule = DecisionRule.load(folder)
    task_type = config["task"]["type"]
    entity_types = sorted({c[2:] for c in encoder.classes if c != "O"})
    shown = entity_types if task_type == "ner" else list(encoder.classes)
    lines = [
        f"# {config['task']['name']} ({task_type})" + (", ONNX export" if export is not None else ""),
        "",
        PURPOSE[task_type].format(labels=", ".join(f"`{c}`" for c in shown), n=len(shown)),
        f"Fine-tuned by clintune from `{config['model']['name_or_path']}`.",
        "",
    ]
    if metrics.get("warnings"):  # first, where nobody can miss it: the model may not work at all
        from clintune.evaluation.scores import FAILURE_ADVICE

        lines += ["## Warning: this model may have learnt little", "",
                  *[f"- {warning}" for warning in metrics["warnings"]], "", FAILURE_ADVICE.strip().capitalize() + ".", ""]
    if export is not None:
        lines += [_export_text(export), "", "## Export check", "", _export_check_text(export), ""]
    lines += [
        "## Labels",
        "",
        _labels_table(encoder, metrics),
        "",
        "## Data",
        "",
        _data_table(run.get("data", {})),
        "",
        "## Metrics",
        "",
    ]
    figures = figures_in_force(metrics, rule.describe(encoder) if task_type != "ner" else "")
    if figures.earlier:
        if metrics.get("must_not_miss_unmet"):
            lines += [*_metrics_preamble(metrics, config), ""]
        lines += [f"The decision rule in force ({figures.rule}) was stored after training; the figures in this section",
                  "were measured under it, on the data named in each heading. The training-time figures, measured under",
                  "the earlier rule, follow them under their own heading.", ""]
    else:
        lines += [*_metrics_preamble(metrics, config), ""]
    if not figures.current:
        lines += ["No figures were measured under the rule in force: score the model under it with",
                  "`clintune eval --model DIR --data FILE` on labelled data.", ""]
    for figure_set in figures.current:
        lines += _figure_set_lines(figure_set, HEADLINES[task_type])
    if figures.earlier:
        lines += [f"### At training time, under the earlier rule ({figures.earlier_rule}): not the rule in force", ""]
        for figure_set in figures.earlier:
            lines += _figure_set_lines(figure_set, HEADLINES[task_type], level="####")
    if metrics.get("selection"):
        lines += ["## Checkpoint selection", "", _selection_text(metrics["selection"]), ""]
    lines += ["## Decision rule and calibration", "", _decision_text(rule, encoder, metrics), ""]
    lines += ["## Intended use and limitations", "", _limitations(config), ""]
    lines += ["## Training configuration", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", ""]
    lines += ["## Reproduce", "", "```bash"]
    if run.get("command"):
        lines.append(f"# as run ({run.get('created', 'unknown date')}):\n{run['command']}")
    lines += [f"# from this folder's resolved config:\nclintune train {published}/clintune.yaml --set output.dir=NEW_DIR"]
    if export is not None:
        quantize = " --quantize int8" if export.get("quantize") == "int8" else ""
        lines.append(f"clintune export --model NEW_DIR{quantize} --output NEW_DIR-onnx")
    lines.append("```")
    if run.get("versions"):
        lines += ["", "Software: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()) + "."]
    return "\n".join(lines) + "\n"


def write_model_card(folder: Path, published: Path | None = None) -> None:
    (folder / CARD_FILE).write_text(render_model_card(folder, published), encoding="utf-8")


def _figure_set_lines(figures: FigureSet, headline: tuple[str, ...], level: str = "###") -> list[str]:
    """A heading naming the data (and "tuned here: optimistic"), its figures, and the default rule's beside them."""
    name = figures.name.capitalize() if figures.name in ("validation", "test") else f"On `{figures.name}`"
    lines = [f"{level} {name}" + (f" ({figures.note})" if figures.note else ""), "",
             _headline_table(figures.metrics, headline), "",
             _per_class_table(figures.metrics.get("per_class", {}), figures.metrics.get("per_group", {})), ""]
    if figures.default_rule:
        lines += ["With the default rule (most probable class) instead, on the same data:", "",
                  _headline_table(figures.default_rule, headline), "",
                  _per_class_table(figures.default_rule.get("per_class", {}), figures.default_rule.get("per_group", {})), ""]
    return lines


def _export_info(folder: Path) -> dict[str, Any] | None:
    """``export.json`` of an ONNX folder; None for a PyTorch folder."""
    if not (folder / ONNX_FILE).is_file():
        return None
    path = folder / EXPORT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _export_text(export: dict[str, Any]) -> str:
    weights = "dynamic int8 weights, one scale per output channel" if export.get("quantize") == "int8" else "float32 weights"
    source = f" of the PyTorch model folder `{export['source']}`" if export.get("source") else ""
    return (f"This folder is the ONNX export (`{ONNX_FILE}`, {weights}){source}; `clintune predict` and "
            "`clintune eval` run it on ONNX Runtime. The metrics below were measured on the PyTorch model at "
            "training time; the export check says how closely this export follows it. Its decision rule and figures are "
            f"the source folder's as of the export ({export.get('exported', 'date not recorded')}): a rule stored in the "
            "source since then is not in this folder; export again to carry it.")


def _export_check_text(export: dict[str, Any]) -> str:
    check = export.get("check")
    if not check:
        return ("Not checked: exported without `--check-data`. To compare it with the PyTorch model, export again "
                "(to another `--output`) with `--check-data FILE` (a labelled file), or run `clintune eval` on both "
                "folders with the same file.")
    recalls = "".join(
        f"\n- Recall of `{key}` (must not miss): {r['pytorch']:.4f} with PyTorch, {r['exported']:.4f} exported "
        f"({r['difference']:+.4f})." for key, r in check.get("must_not_miss_recall", {}).items())
    return (f"Checked at export (`--check-data`) on `{check['data']}`: {check['agreement']:.2%} of {check['agreement_unit']} "
            f"agree with the PyTorch model; {check['metric']} {check['pytorch']:.4f} (PyTorch) and {check['exported']:.4f} "
            f"(ONNX), a difference of {check['difference']:+.4f}.{_label_agreement_text(check)}{recalls}")


def _label_agreement_text(check: dict[str, Any]) -> str:
    """Multi-label: macro-F1 of both, and the labels whose decisions agree least."""
    if "label_agreement" not in check:
        return ""
    worst = sorted(check["label_agreement"].items(), key=lambda item: item[1])[:3]
    return (f" f1_macro {check['f1_macro']['pytorch']:.4f} (PyTorch) and {check['f1_macro']['exported']:.4f} (ONNX). Labels "
            "agreeing least: " + ", ".join(f"`{label}` {value:.2%}" for label, value in worst) + ".")


def _labels_table(encoder: LabelEncoder, metrics: dict[str, Any]) -> str:
    counts = metrics.get("data", {}).get("train_label_counts", {})
    weights = metrics.get("class_weights", {})
    rows = ["| id | label | training count | loss weight |", "|---|---|---|---|"]
    for i, label in enumerate(encoder.classes):
        marker = " (positive)" if label == encoder.positive else ""
        rows.append(f"| {i} | `{label}`{marker} | {counts.get(label, '')} | {_number(weights.get(label, 1.0))} |")
    return "\n".join(rows)


def _data_table(data: dict[str, Any]) -> str:
    if not data:
        return "Not recorded."
    rows = ["| split | file | examples | SHA-256 |", "|---|---|---|---|"]
    for split, info in data.items():
        rows.append(f"| {split} | `{info['path']}` | {info['examples']} | `{info['sha256']}` |")
    return "\n".join(rows)


def _headline_table(metrics: dict[str, Any], keys: tuple[str, ...]) -> str:
    intervals = metrics.get("confidence_intervals", {})
    rows = ["| metric | value | 95% CI |", "|---|---|---|"]
    for key in keys:
        if metrics.get(key) is None:
            continue
        interval = intervals.get(key)
        ci = f"{interval['low']:.3f} – {interval['high']:.3f}" if interval else ""
        rows.append(f"| {key} | {metrics[key]:.4f} | {ci} |")
    if intervals:
        first = next(iter(intervals.values()))
        rows.append("")
        rows.append(f"Intervals: percentile bootstrap, {first['resamples']} resamples of the examples, seed {first['seed']}.")
    return "\n".join(rows)


def _per_class_table(per_class: dict[str, Any], per_group: dict[str, Any] | None = None) -> str:
    """Per-class rows, then one row per decision group (a member caught as any member counts)."""
    if not per_class:
        return ""
    if "threshold" in next(iter(per_class.values())):  # multi-label: each label at its own threshold
        return _per_label_table(per_class)
    rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, row in per_class.items():
        rows.append(f"| `{label}` | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
    for group, row in (per_group or {}).items():
        rows.append(f"| `{group}` (group) | {row['precision']:.3f} | {row['recall']:.3f} | | {row['support']} |")
    return "\n".join(rows)


def _per_label_table(per_class: dict[str, Any]) -> str:
    """Multi-label: one row per label, most supported first, with its threshold and ranking quality."""
    rows = ["| label | support | threshold | precision | recall | F1 | ROC-AUC | average precision |",
            "|---|---|---|---|---|---|---|---|"]
    for label, row in sorted(per_class.items(), key=lambda item: -item[1]["support"]):
        rows.append(f"| `{label}` | {row['support']} | {row['threshold']:.3g} | {row['precision']:.3f} | {row['recall']:.3f} | "
                    f"{row['f1']:.3f} | {_number(row['roc_auc']) if row['roc_auc'] is not None else 'n/a'} | "
                    f"{_number(row['average_precision']) if row['average_precision'] is not None else 'n/a'} |")
    return "\n".join(rows)


def _metrics_preamble(metrics: dict[str, Any], config: dict[str, Any]) -> list[str]:
    if metrics.get("must_not_miss_unmet"):
        return [f"**The must-not-miss rule asked for could not be met** ({metrics['must_not_miss_unmet']}): these numbers are",
                "those of the default decision rule (most probable class), which this model uses."]
    if "default_rule" not in metrics:
        return ["Scored at the end of training with the default decision rule (threshold 0.5 / most probable class);",
                "see the next section for any threshold chosen since."]
    must_not_miss = config.get("decision", {}).get("must_not_miss", {})
    targets = ", ".join(f"`{label}` recall >= {value}" for label, value in must_not_miss.items())
    return [f"Scored at the end of training with the must-not-miss rule tuned then ({targets}, see the next section).",
            "Its thresholds were chosen on the validation split, so validation numbers for those classes are optimistic;",
            "test numbers are not. Each split is also scored by the default rule: the difference is what the rule",
            "gains in recall and costs in precision."]


def _decision_text(rule: DecisionRule, encoder: LabelEncoder, metrics: dict[str, Any]) -> str:
    lines = [f"Decision rule: {rule.describe(encoder)}."]
    if encoder.task_type == "multilabel":
        return "\n".join(lines + _label_threshold_lines(rule, metrics))
    for tuning in rule.tuning:
        lines.append(
            f"- `{tuning['class']}` threshold {tuning['threshold']:.4g} chosen for {tuning['target']} on "
            f"`{tuning['data']}` ({tuning['n_examples']} examples; achieved {tuning['achieved']:.3f})."
        )
    ece = metrics.get("validation", {}).get("ece")
    if ece is not None:
        lines.append(f"Expected calibration error on validation data at training time: {ece:.4f}.")
    if rule.temperature != 1.0:
        lines.append(f"Probabilities are divided by a temperature of {rule.temperature:.4g}, fitted on held-out data.")
    lines.append("`transformers.pipeline` does not read `decision.json`: it ignores this rule and predicts the most probable class.")
    return "\n".join(lines)


def _label_threshold_lines(rule: DecisionRule, metrics: dict[str, Any]) -> list[str]:
    """How each label's threshold was chosen: tuned for F1 or a recall target, or kept at 0.5 (listed by name)."""
    records = rule.tuning
    kept = [r["class"] for r in records if r["target"] == "default"]
    targets = [r for r in records if r["target"].startswith("recall")]
    lines = []
    if records:
        source = records[0]["data"]
        lines.append(f"Each label's threshold was chosen on `{source}` ({records[0]['n_examples']} examples): the one of its best "
                     f"F1 for {sum(r['target'] == 'best f1' for r in records)} labels, so validation figures are optimistic.")
    for record in targets:
        lines.append(f"- `{record['class']}`: {record['target']} -> threshold {record['threshold']:.4g} "
                     f"(achieved {record['achieved']:.3f}{'' if record.get('met', True) else ', NOT met'}).")
    if kept:
        lines.append(f"- Kept at 0.5, with fewer than 10 validation positives to tune on: {', '.join(f'`{c}`' for c in kept)}.")
    ece = metrics.get("validation", {}).get("ece")
    if ece is not None:
        lines.append(f"Mean per-label calibration error on validation data at training time: {ece:.4f}.")
    lines.append("`transformers.pipeline(..., top_k=None)` gives the same sigmoid probabilities but not these thresholds.")
    return lines


def _selection_text(selection: dict[str, Any]) -> str:
    def when(prefix: str) -> str:
        epoch = selection[f"{prefix}_epoch"]
        return (f"epoch {epoch:g} " if epoch is not None else "") + f"(step {selection[f'{prefix}_step']})"

    return (
        f"The weights are those of {when('kept')}, the best of {selection['evaluations']} evaluations by {selection['split']} "
        f"`{selection['metric']}` = {selection['kept_value']:.4f}, scored as `clintune eval` scores it. "
        f"The last evaluation, {when('last')}, scored {selection['last_value']:.4f}."
    )


def _limitations(config: dict[str, Any]) -> str:
    return "\n".join([
        "- A research and decision-support model, not a medical device: a clinician reviews every output.",
        "- Measured only on the data listed above; expect lower scores on other institutions, note types,",
        "  languages or time periods. Re-evaluate (`clintune eval`) on local data before use.",
        f"- Texts longer than {config['model']['max_length']} tokens are "
        + ("read in overlapping windows." if config["task"]["type"] == "ner" or config["model"].get("long_text") == "chunk"
           else "truncated: later text is not seen."),
        "- Rare classes with few training examples have wide confidence intervals; check the per-class table.",
        _calibration_limitation(config["task"]["type"]),
    ])


def _calibration_limitation(task_type: str) -> str:
    if task_type == "multilabel":
        return ("- Each label's probability is calibrated only as far as its calibration error in `metrics.json` "
                "(`per_class`) says.")
    if task_type == "ner":
        return "- Entity scores are the mean probability of their words' tags; their calibration is not measured."
    return ("- Probabilities are calibrated only as far as the expected calibration error above says; "
            "`clintune eval --output DIR` draws the reliability diagram (`reliability.png`).")


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else str(value)
