"""Export a model folder to ONNX (optionally int8-quantised); ``clintune.inference.predictor`` runs it with ONNX Runtime.

An exported folder holds ``model.onnx`` beside the tokenizer, ``labels.json``,
``clintune.yaml``, ``config.json`` and any ``decision.json``, so ``clintune
predict`` and ``clintune eval`` accept it in place of the PyTorch folder.
Needs the ``onnx`` extra: ``pip install 'clintune[onnx]'``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from clintune.errors import ClintuneError
from clintune.inference.backends import require_onnx
from clintune.modeling.folder import EXPORT_FILE, ONNX_FILE, check_remote_code, read_model_folder
from clintune.modeling.loading import load_tokenizer, load_trained_model
from clintune.modeling.tasks import task_for
from clintune.runtime.files import publish, remove_stale, staging_dir_for, write_json

COPIED = ("config.json", "labels.json", "clintune.yaml", "decision.json", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json", "vocab.txt", "README.md", "run.json", "metrics.json")


def export(model_dir: Path, output_dir: Path, quantize: str | None = None, *, trust_remote_code: bool = False) -> Path:
    """Write an ONNX model folder for ``model_dir``; ``quantize="int8"`` adds dynamic int8 weights. A folder that
    ships code of its own loads only with ``trust_remote_code`` (``clintune.modeling.folder.check_remote_code``)."""
    import torch

    require_onnx("onnxscript")
    folder = read_model_folder(model_dir)
    if folder.is_onnx:
        raise ClintuneError(f"{model_dir} is already an ONNX folder; export the PyTorch folder it came from")
    check_remote_code(folder, trust_remote_code)
    encoder = folder.encoder
    model = load_trained_model(task_for(encoder.task_type), str(model_dir), encoder, trust_remote_code, folder.hf_config).eval()
    names = model_input_names(load_tokenizer(str(model_dir), trust_remote_code, folder.tokenizer_config))
    staging = staging_dir_for(output_dir)
    remove_stale(staging)
    staging.mkdir(parents=True)
    for name in COPIED:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, staging / name)
    example = {name: (torch.zeros if name == "token_type_ids" else torch.ones)((2, 8), dtype=torch.long) for name in names}
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    float_path = staging / ("model-fp32.onnx" if quantize else ONNX_FILE)
    with torch.inference_mode():
        torch.onnx.export(
            _logits_only(model, names).eval(), tuple(example[n] for n in names), str(float_path), input_names=names,
            output_names=["logits"], dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
            dynamo=True, external_data=False, verbose=False,
        )
    if quantize == "int8":
        quantization = require_onnx("onnxruntime.quantization")
        _drop_intermediate_shapes(float_path)
        quantization.quantize_dynamic(
            str(float_path), str(staging / ONNX_FILE), weight_type=quantization.QuantType.QInt8, per_channel=True
        )
        float_path.unlink()
    from datetime import datetime, timezone

    write_json(staging / EXPORT_FILE, {"source": str(model_dir.absolute()), "format": "onnx", "quantize": quantize or "none",
                                       "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    publish(staging, output_dir)
    return output_dir


def _drop_intermediate_shapes(path: Path) -> None:
    """Remove the exporter's intermediate shape annotations; the quantiser re-infers them and
    some (e.g. a classifier head's) can disagree with its own inference."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def model_input_names(tokenizer: Any) -> list[str]:
    """The inputs the tokenizer gives the model (``token_type_ids`` only for encoders that have them)."""
    produced = tokenizer("a")
    return [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in produced]


def _logits_only(model: Any, names: list[str]) -> Any:
    """``model`` wrapped so that the exported graph takes ``names`` as inputs and returns the logits tensor alone."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(**{name: inputs[name] for name in names}).logits

    return LogitsOnly(model)
