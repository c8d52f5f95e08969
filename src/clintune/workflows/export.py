"""``clintune export``: an ONNX model folder, optionally checked against the original on labelled data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clintune.errors import ClintuneError
from clintune.modeling.folder import EXPORT_FILE, read_export_info
from clintune.runtime import guards
from clintune.runtime.files import write_json
from clintune.workflows.evaluate import evaluate, refresh_model_card


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` wrote: the export folder and its record (``export.json``: format, quantisation, the check)."""

    output_dir: Path
    info: dict[str, Any]


def export(
    model_dir: str | Path, output_dir: str | Path | None = None, *, fmt: str = "onnx", quantize: str | None = None,
    check_data: str | Path | None = None, trust_remote_code: bool = False,
) -> ExportResult:
    """Export a model folder to ONNX; with ``check_data``, compare the exported model with the original on it.

    ``trust_remote_code``: let a folder that ships Python code of its own run it (the export and both
    sides of the check); without it such a folder is refused (``clintune.modeling.folder.check_remote_code``).
    """
    from clintune.inference.onnx_export import export as export_onnx

    if fmt != "onnx":
        raise ClintuneError(f"export --format {fmt}: only onnx is supported")
    if quantize not in (None, "int8"):
        raise ClintuneError(f"export --quantize {quantize}: only int8 is supported")
    source = Path(model_dir)
    target = Path(output_dir) if output_dir else source.with_name(source.name + ("-onnx-int8" if quantize else "-onnx"))
    guards.check_outputs("export", [guards.Input("--model", source, whole=True),
                                    guards.Input("--check-data", Path(check_data)) if check_data is not None else None],
                         [guards.Output("--output", target)])
    if target.exists() or target.is_symlink():
        raise ClintuneError(f"{target} already exists; choose another --output or remove it")
    export_onnx(source, target, quantize, trust_remote_code=trust_remote_code)
    info = read_export_info(target)
    if check_data is not None:
        original = evaluate(source, check_data, resamples=0, trust_remote_code=trust_remote_code)
        exported = evaluate(target, check_data, resamples=0, trust_remote_code=trust_remote_code)
        key = _headline_key(original.metrics)
        info["check"] = {
            "data": str(Path(check_data).absolute()),
            "agreement": float((original.predicted_ids == exported.predicted_ids).mean()),
            "agreement_unit": ("word tags" if "n_entities" in original.metrics else
                               "label decisions (notes x labels)" if original.predicted_ids.ndim == 2 else "labels"),
            "metric": key,
            "pytorch": original.metrics[key],
            "exported": exported.metrics[key],
            "difference": exported.metrics[key] - original.metrics[key],
        }
        if original.predicted_ids.ndim == 2:  # multi-label: macro-F1 beside micro-F1, and each label's agreement
            info["check"]["f1_macro"] = {"pytorch": original.metrics["f1_macro"], "exported": exported.metrics["f1_macro"]}
            info["check"]["label_agreement"] = dict(zip(original.classes, (original.predicted_ids == exported.predicted_ids)
                                                        .mean(axis=0).tolist()))
        recalls = must_not_miss_recalls(source, original.metrics, exported.metrics)
        if recalls:  # the costly error: a must-not-miss class or group the export catches less often
            info["check"]["must_not_miss_recall"] = recalls
        write_json(target / EXPORT_FILE, info)
    refresh_model_card(target)
    return ExportResult(target, info)


def _headline_key(metrics: dict[str, Any]) -> str:
    return "f1_micro" if "f1_micro" in metrics else "f1_macro" if "f1_macro" in metrics else "f1"


def must_not_miss_recalls(source: Path, original: dict[str, Any], exported: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Recall of every class and group the source's rule holds a threshold for, PyTorch against the export."""
    from clintune.modeling.decision import DecisionRule

    recalls = {}
    rule = DecisionRule.load(source)
    if "f1_micro" in original:  # multi-label: every label has a threshold; only recall targets are must-not-miss labels
        keys = [r["class"] for r in rule.tuning if str(r.get("target", "")).startswith("recall")]
    else:
        keys = list(rule.class_thresholds)
    for key in keys:
        table = "per_group" if key in original.get("per_group", {}) else "per_class"
        before, after = original.get(table, {}).get(key), exported.get(table, {}).get(key)
        if before is not None and after is not None:
            recalls[key] = {"pytorch": before["recall"], "exported": after["recall"], "difference": after["recall"] - before["recall"]}
    return recalls
