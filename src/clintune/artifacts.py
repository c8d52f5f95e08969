"""The model folder: what ``train`` writes, atomically, and what the other verbs load.

A model folder holds the weights (safetensors), the tokenizer, ``config.json``
with the real label names, ``labels.json``, the resolved ``clintune.yaml`` and
``metrics.json``. It is assembled in a staging folder beside the target and
renamed into place only once everything is written, so a killed run never
leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from clintune.config import Config, save_config, validate_config
from clintune.errors import ClintuneError, ModelFolderError
from clintune.labels import LABELS_FILE, LabelEncoder

CONFIG_FILE = "clintune.yaml"
METRICS_FILE = "metrics.json"
TRAINING_LOG_FILE = "training_log.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "model.onnx")


def work_dir_for(output_dir: Path) -> Path:
    """Where checkpoints and the staging folder of a run live, beside its output folder."""
    return output_dir.with_name(output_dir.name + ".work")


def check_output_dir(output_dir: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to overwrite a finished model, or to silently discard an interrupted run."""
    if output_dir.exists() and not overwrite:
        raise ClintuneError(
            f"output.dir: {output_dir} already exists\n"
            "  fix: pass --overwrite to replace it, or choose another folder with --set output.dir=DIR"
        )
    work = work_dir_for(output_dir)
    if work.exists() and not resume and not overwrite and any((work / "checkpoints").glob("checkpoint-*")):
        raise ClintuneError(
            f"an interrupted run left checkpoints in {work}\n"
            "  fix: pass --resume to continue it, or --overwrite to start again"
        )


def record_run_config(work: Path, config: Config, resume: bool) -> None:
    """Keep the run's config beside its checkpoints; a resumed run must use the same one."""
    import yaml

    path = work / CONFIG_FILE
    if resume and path.is_file():
        before = _flatten(yaml.safe_load(path.read_text(encoding="utf-8")))
        now = _flatten(config.to_dict())
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if changed:
            raise ClintuneError(
                f"--resume: the config differs from the interrupted run's ({path}) at: {', '.join(changed)}\n"
                "  fix: resume with the same config and --set values, or start again with --overwrite"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    save_config(config, path)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """One JSON object per line, written atomically."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def save_model_folder(staging: Path, tokenizer: Any, encoder: LabelEncoder, config: Config) -> None:
    """Complete the weights in ``staging`` (written by ``Trainer.save_model``) into a loadable model folder."""
    staging.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(staging)
    encoder.save(staging)
    save_config(config, staging / CONFIG_FILE)


def save_training_record(staging: Path, metrics: dict[str, Any], log_history: list[dict[str, Any]]) -> None:
    """``metrics.json`` and the Trainer's log."""
    write_json(staging / METRICS_FILE, metrics)
    write_json(staging / TRAINING_LOG_FILE, log_history)


def publish(staging: Path, output_dir: Path) -> None:
    """Move a complete staging folder to ``output_dir``, replacing an old one only now."""
    if output_dir.exists():
        retired = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        os.replace(output_dir, retired)
        os.replace(staging, output_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, output_dir)


def read_folder_config(folder: Path) -> Config:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelFolderError(f"{folder}: no {CONFIG_FILE}; this is not a folder written by 'clintune train'")
    import yaml

    return validate_config(yaml.safe_load(path.read_text(encoding="utf-8")), source=str(path))


def check_model_folder(folder: Path) -> tuple[LabelEncoder, Config]:
    """Check a model folder is complete and its label files agree; say what is wrong if not."""
    if not folder.is_dir():
        raise ModelFolderError(f"model folder not found: {folder}")
    missing = [name for name in ("config.json", LABELS_FILE, CONFIG_FILE) if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("model.safetensors")
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        missing.append("tokenizer.json")
    if missing:
        raise ModelFolderError(
            f"{folder}: incomplete model folder, missing {', '.join(missing)}\n"
            "  fix: point --model at a folder written by 'clintune train' (an interrupted run leaves none)"
        )
    encoder = LabelEncoder.load(folder)
    try:
        hf_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{folder / 'config.json'}: not valid JSON ({exc})") from None
    id2label = {int(k): v for k, v in (hf_config.get("id2label") or {}).items()}
    if id2label != encoder.id2label:
        raise ModelFolderError(
            f"{folder}: config.json id2label {id2label} does not match {LABELS_FILE} {list(encoder.classes)}\n"
            "  fix: the folder was edited or mixed from two runs; retrain or restore the matching files"
        )
    return encoder, read_folder_config(folder)


def load_model_folder(
    folder: Path, batch_size: int | None = None, show_progress: bool = False, threads: int | None = None
) -> Any:
    """A ``Predictor`` for a checked model folder (PyTorch, or ONNX when it holds ``model.onnx``).

    A PyTorch model goes to the GPU when there is one. ``batch_size`` defaults to
    what suits the device: small batches on CPU, wide ones on a GPU.
    """
    from transformers.utils import logging as hf_logging

    from clintune.decision import DecisionRule
    from clintune.modeling import load_model, load_tokenizer
    from clintune.prediction import CPU_BATCH_SIZE, GPU_BATCH_SIZE, Predictor
    from clintune.tasks import task_for

    encoder, config = check_model_folder(folder)
    hf_logging.disable_progress_bar()
    tokenizer = load_tokenizer(str(folder))
    if (folder / "model.onnx").is_file():
        from clintune.onnx_export import OnnxModel

        model: Any = OnnxModel(folder / "model.onnx", threads)
        on_gpu = False
    else:
        import torch

        model = load_model(task_for(encoder.task_type), str(folder), encoder)
        on_gpu = torch.cuda.is_available()
        if on_gpu:
            model = model.to("cuda")
    batch_size = batch_size or (GPU_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE)
    return Predictor(model, tokenizer, encoder, config, batch_size, DecisionRule.load(folder), show_progress)
