"""``clintune export``: an ONNX model folder, optionally checked against the original on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clintune import guards
from clintune.artifacts import EXPORT_FILE, read_export_info
from clintune.errors import ClintuneError
from clintune.files import write_json
from clintune.workflows.evaluate import evaluate, refresh_model_card


def export(
    model_dir: str | Path, output_dir: str | Path | None = None, fmt: str = "onnx", quantize: str | None = None,
    check_data: str | Path | None = None,
) -> dict[str, Any]:
    """Export a model folder to ONNX; with ``check_data``, compare the exported model with the original on it."""
    from clintune.onnx_export import export as export_onnx

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
    export_onnx(source, target, quantize)
    info = read_export_info(target)
    if check_data is not None:
        original = evaluate(source, check_data, resamples=0)
        exported = evaluate(target, check_data, resamples=0)
        key = _headline_key(original.metrics)
        info["check"] = {
            "data": str(Path(check_data).absolute()),
            "agreement": float((original.predicted_ids == exported.predicted_ids).mean()),
            "agreement_unit": "word tags" if "n_entities" in original.metrics else "labels",
            "metric": key,
            "pytorch": original.metrics[key],
            "exported": exported.metrics[key],
            "difference": exported.metrics[key] - original.metrics[key],
        }
        write_json(target / EXPORT_FILE, info)
    refresh_model_card(target)
    return {"output": str(target), **info}


def _headline_key(metrics: dict[str, Any]) -> str:
    return "f1_macro" if "f1_macro" in metrics else "f1"


