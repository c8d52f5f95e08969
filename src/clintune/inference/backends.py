"""The two ways a Predictor runs a model folder: PyTorch, or ONNX Runtime for an exported folder (with its
threads, passes side by side and the int8 fusion it skips); ``load_backend`` picks by the folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from clintune.errors import ClintuneError
from clintune.modeling.folder import ONNX_FILE, ModelFolder
from clintune.modeling.loading import detect_hardware, load_trained_model, resolve_precision, torch_dtype
from clintune.modeling.tasks import task_for
from clintune.runtime.system import usable_cpus

logger = logging.getLogger(__name__)

# Narrow batches are faster on a CPU, GPUs want wide ones (docs/benchmarks.md, "Speed").
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 64


def forward_batch_size(folder: ModelFolder, requested: int | None, on_gpu: bool, warn: bool = True) -> int:
    """Texts per forward pass: as asked; else one at a time for a dynamic-int8 ONNX folder; else 8 on CPU, 64 on a GPU.

    Dynamic int8 quantises each batch's activations with one scale for the whole batch, so a text's
    probabilities move with whatever shares its batch (docs/benchmarks.md, "Prediction at scale"). One text per
    pass makes every answer independent of the others:
    the same in ``predict``, ``eval``, the export check and the web service, whatever the input order.
    """
    if requested is not None:
        if requested > 1 and folder.is_dynamic_int8 and warn:
            logger.warning("batch size %d on a dynamic-int8 model: a text's answer will depend on the other texts "
                           "in its batch (leave --batch-size out to run one text at a time)", requested)
        return requested
    if folder.is_dynamic_int8:
        return 1
    return GPU_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE


def require_onnx(module: str) -> Any:
    """Import one of the ``onnx`` extra's modules, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ClintuneError(f"ONNX support needs {module}: pip install 'clintune[onnx]'") from None


# ONNX Runtime rewrites that make a dynamic-int8 encoder slower on CPU: fusing the residual add into the
# layer norm (SkipLayerNormalization) costs int8 MiniLM time, and the unfused graph, the graph as exported,
# agrees with the fused one as often (scripts/bench_int8_fusion.py; docs/benchmarks.md, "Prediction at scale").
SLOWER_WHEN_FUSED = ("SkipLayerNormFusion",)


class OnnxModel:
    """An ONNX Runtime session that answers like the PyTorch model's logits.

    With ``passes`` above 1, ``Predictor.logits`` runs that many forward passes side by side, each
    on one thread of a second session (``side_session``), instead of one pass at a time spread over
    ``threads``; fewer passes than that take the main session, one after another, on every thread. For one text per pass
    that keeps every core busy (docs/benchmarks.md, "Prediction at scale").

    ``disabled_optimizers`` names ONNX Runtime graph rewrites to leave out (see ``SLOWER_WHEN_FUSED``).
    """

    def __init__(self, path: Path, threads: int | None = None, passes: int = 1, disabled_optimizers: tuple[str, ...] = ()) -> None:
        ort = require_onnx("onnxruntime")

        def session(threads: int | None) -> Any:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            return ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled_optimizers) or None,
            )

        self.passes = passes
        self.session = session(threads)
        self.side_session = session(1) if passes > 1 else self.session
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, batch: dict[str, np.ndarray], side_by_side: bool = False) -> np.ndarray:
        shape = batch["input_ids"].shape
        feeds = {name: batch.get(name, np.zeros(shape, dtype=np.int64)).astype(np.int64) for name in self.input_names}
        return (self.side_session if side_by_side else self.session).run(None, feeds)[0]


def load_backend(folder: ModelFolder, threads: int | None = None, batch_size: int | None = None, *,
                 trust_remote_code: bool = False, precision: str = "auto") -> tuple[Any, bool]:
    """The folder's model (an ``OnnxModel`` for an exported folder, else the PyTorch model, on the GPU
    when there is one, in ``precision``: ``auto`` is bf16 where the GPU has it in hardware, else fp16,
    as training's ``auto``; the logits are read back as float32) and whether it runs on a GPU. An ONNX
    folder run one text per pass runs ``threads`` passes side by side (default: one per CPU this process
    may use). ``trust_remote_code``: the caller's, already checked against the folder by
    ``Predictor.from_model_folder`` (``clintune.modeling.folder.check_remote_code``)."""
    if folder.is_onnx:
        one_per_pass = forward_batch_size(folder, batch_size, on_gpu=False, warn=False) == 1
        passes = (threads or usable_cpus()) if one_per_pass else 1
        disabled = SLOWER_WHEN_FUSED if folder.is_dynamic_int8 else ()
        return OnnxModel(folder.path / ONNX_FILE, threads, passes, disabled), False
    import torch

    model = load_trained_model(task_for(folder.encoder.task_type), str(folder.path), folder.encoder, trust_remote_code,
                               folder.hf_config)
    if not torch.cuda.is_available():
        return model, False
    return model.to("cuda", dtype=torch_dtype(resolve_precision(precision, detect_hardware()))), True


def forward_function(model: Any, side_by_side: bool = False) -> Any:
    """The backend's forward pass: a collated batch (tensors or arrays) in, a numpy array of logits out
    (``side_by_side``: an ``OnnxModel``'s one-thread session, for passes run at once)."""
    if isinstance(model, OnnxModel):
        return lambda batch: model.logits({k: np.asarray(v) for k, v in batch.items()}, side_by_side)
    import torch

    def torch_forward(batch: dict[str, Any]) -> np.ndarray:
        model.eval()
        device = next(model.parameters()).device
        return model(**{k: torch.as_tensor(v).to(device) for k, v in batch.items()}).logits.float().cpu().numpy()

    return torch_forward
