"""The CUDA path, ready to prove in one short run on a GPU (``make test-gpu``; issue #41).

The device is a parameter: ``CLINTUNE_TEST_DEVICE=cuda|cpu``, by default ``cuda`` where torch sees a
GPU. Without one, and without ``CLINTUNE_TEST_DEVICE=cpu``, every test here is skipped with that
reason; ``CLINTUNE_TEST_DEVICE=cpu make test-gpu`` runs them all on the CPU now, in fp32 only (on a
machine with a GPU it hides the GPU from clintune). The main ``make test`` never runs them (the
``gpu`` marker is deselected in pyproject.toml).

What is proven on the device:
- every tiny config (``configs/tiny/*.yaml``) trains in fp32, fp16 and bf16, with finite losses, the
  precision printed at the start and recorded in ``metrics.json`` and ``run.json``, and fp32 weights on disk;
- ``training.precision: auto`` is bf16 on compute capability 8.0 and up, fp16 below, fp32 on the CPU;
- the class-weighted loss of a fixed batch under autocast matches fp32 within ``LOSS_TOLERANCE``
  (fp32 itself against an independent ``log_softmax`` computation);
- ``predict`` on the device (half precision by default on a GPU) gives the CPU's labels, except at
  near-ties, with probabilities within ``PROBABILITY_TOLERANCE``; in fp32 on the device, within 1e-3;
- ``eval`` and the ONNX ``export`` (with its check on labelled data) work from a device-trained folder;
- CUDA out of memory in training or prediction ends in a clear exit-2 message naming the batch size
  (injected on any device; on a GPU also from the real allocator, under a tiny memory cap).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, TINY_MODEL, invoke_cli, require_module

pytestmark = pytest.mark.gpu

REQUESTED = os.environ.get("CLINTUNE_TEST_DEVICE", "").strip().lower()
ON_CPU = REQUESTED == "cpu"
PRECISIONS = ("fp32",) if ON_CPU else ("fp32", "fp16", "bf16")
TINY_CONFIGS = sorted(path.stem for path in (REPO / "configs" / "tiny").glob("*.yaml"))
EPOCHS = 3  # enough for the tiny models to leave their start; the CPU variant stays near 2 minutes

# How far a half-precision result may be from fp32. Probabilities: absolute, per class (or per tag of a
# subword); two labels that differ count as a near-tie, not a failure, where the CPU's probabilities of
# the two are within twice the tolerance. Loss: relative.
PROBABILITY_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "bf16": 5e-2}
LOSS_TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3, "bf16": 3e-2}


@pytest.fixture(scope="module")
def device() -> Iterator[str]:
    """``cuda`` or ``cpu``; with ``cpu`` on a machine that has a GPU, clintune sees none."""
    import torch

    if REQUESTED not in ("", "cuda", "cpu"):
        pytest.fail(f"CLINTUNE_TEST_DEVICE={REQUESTED}: use cuda or cpu")
    if REQUESTED != "cpu" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here (CLINTUNE_TEST_DEVICE=cpu runs these tests on the CPU)")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        if ON_CPU:
            patch.setattr(torch.cuda, "is_available", lambda: False)
        yield "cpu" if ON_CPU else "cuda"


@pytest.fixture(scope="module")
def trained(device: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], tuple[Path, list[str]]]:
    """Train a tiny config in a precision once (in this process, on the device); returns the model folder and
    the lines clintune logged while training."""
    root = tmp_path_factory.mktemp("trained-on-" + device)
    done: dict[tuple[str, str], tuple[Path, list[str]]] = {}

    def train(name: str, precision: str) -> tuple[Path, list[str]]:
        if (name, precision) not in done:
            from clintune import api
            from clintune.config.loading import load_config

            folder = root / f"{name}-{precision}"
            overrides = [f"output.dir={folder}", f"training.epochs={EPOCHS}", f"training.precision={precision}",
                         "evaluation.bootstrap_resamples=0"]
            with logged_lines() as lines:
                api.train(load_config(REPO / "configs" / "tiny" / f"{name}.yaml", overrides))
            done[(name, precision)] = folder, lines
        return done[(name, precision)]

    return train


@contextlib.contextmanager
def logged_lines() -> Iterator[list[str]]:
    """What clintune's loggers say at INFO and above, while the block runs."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("clintune"), Keep(logging.INFO)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def expected_default_precision(device: str) -> str:
    """The rule of issue #41, read from the device directly (not through clintune's ``Hardware``)."""
    import torch

    if device == "cpu":
        return "fp32"
    return "bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp16"


def require_precision(device: str, precision: str) -> None:
    import torch

    if device == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")


def safetensors_dtypes(path: Path) -> dict[str, str]:
    """Tensor name -> dtype, read from the file's own header (8-byte length, then JSON)."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    return {name: entry["dtype"] for name, entry in header.items() if name != "__metadata__"}


# -- training -----------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_tiny_config_trains_on_the_device(name: str, precision: str, device: str, trained: Any) -> None:
    require_precision(device, precision)
    folder, lines = trained(name, precision)
    assert any(line.startswith(f"training on {device}") and line.endswith(f" in {precision}") for line in lines), lines
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["precision"] == precision
    assert json.loads((folder / "run.json").read_text())["precision"] == precision
    losses = [entry[key] for entry in json.loads((folder / "training_log.json").read_text())
              for key in ("loss", "eval_loss") if key in entry]
    assert losses and all(math.isfinite(loss) for loss in losses), losses
    dtypes = safetensors_dtypes(folder / "model.safetensors")
    floating = {name: dtype for name, dtype in dtypes.items() if dtype in ("F64", "F32", "F16", "BF16")}
    assert floating and set(floating.values()) == {"F32"}, {d for d in floating.values() if d != "F32"}


def test_auto_precision_is_the_hardware_default(device: str, trained: Any) -> None:
    """bf16 on compute capability 8.0 and up, fp16 below, fp32 on the CPU: printed and recorded."""
    expected = expected_default_precision(device)
    folder, lines = trained("diagnosis", "auto")
    assert any(line.startswith(f"training on {device}") and line.endswith(f" in {expected}") for line in lines), lines
    assert json.loads((folder / "metrics.json").read_text())["precision"] == expected
    assert json.loads((folder / "run.json").read_text())["precision"] == expected


@pytest.mark.parametrize("precision", PRECISIONS)
def test_weighted_loss_under_autocast_matches_fp32(precision: str, device: str) -> None:
    """The project's class-weighted loss of one fixed batch: under autocast in fp16/bf16 against plain fp32;
    plain fp32 against the same loss computed independently from ``log_softmax``."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from clintune.training.trainer import WeightedCrossEntropy

    require_precision(device, precision)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(str(TINY_MODEL), num_labels=3).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(TINY_MODEL))
    batch = tokenizer(["the patient has a severe headache and chronic kidney disease", "no fever",
                       "family history of breast cancer and of type 2 diabetes in two sisters"], padding=True, return_tensors="pt")
    labels = torch.randint(0, 3, batch["input_ids"].shape)
    labels[batch["attention_mask"] == 0] = -100
    labels[:, 0] = -100
    batch = {key: value.to(device) for key, value in batch.items()}
    labels = labels.to(device)
    weights = [0.6, 1.7, 2.3]
    loss = WeightedCrossEntropy(weights)
    with torch.no_grad():
        fp32_outputs = model(**batch)
        reference = loss(fp32_outputs, labels)
        if precision == "fp32":
            log_probabilities = torch.log_softmax(fp32_outputs.logits.double(), dim=-1)
            kept = labels != -100
            picked = log_probabilities[kept].gather(1, labels[kept].unsqueeze(1)).squeeze(1)
            independent = -(torch.tensor(weights, dtype=torch.float64, device=device)[labels[kept]] * picked).sum() / kept.sum()
            assert float(reference) == pytest.approx(float(independent), rel=LOSS_TOLERANCE["fp32"])
            return
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        with torch.autocast(device_type=device, dtype=dtype):
            half_outputs = model(**batch)
            assert half_outputs.logits.dtype == dtype  # autocast did run in half precision
            half = loss(half_outputs, labels)
    assert half.dtype == torch.float32 and math.isfinite(float(half))
    assert float(half) == pytest.approx(float(reference), rel=LOSS_TOLERANCE[precision])


# -- prediction, eval, export --------------------------------------------------------------


def _probability_rows(predictor: Any, folder: Path) -> np.ndarray:
    """Class probabilities per validation text (classification) or per subword (NER), on the predictor's device."""
    from clintune.data.readers import read_conll
    from clintune.data.tokenization import encode_words
    from clintune.modeling.folder import read_model_folder

    config = read_model_folder(folder).config
    if config.task.type == "ner":
        sentences = read_conll(Path(config.data.validation)).tokens
        features = encode_words(predictor.tokenizer, sentences, config.model.max_length, stride=config.model.stride).features
        logits = np.concatenate(predictor.logits(features)).astype(np.float64)
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exponentials / exponentials.sum(axis=1, keepdims=True)
    import pandas as pd

    texts = pd.read_csv(config.data.validation)[config.data.text_column].astype(str).tolist()
    return predictor.class_probabilities(texts)


def assert_same_labels(reference: np.ndarray, other: np.ndarray, tolerance: float) -> None:
    """Probabilities within ``tolerance``; the most probable label the same, except at near-ties."""
    assert reference.shape == other.shape
    worst = float(np.abs(reference - other).max())
    assert worst <= tolerance, f"probabilities differ by up to {worst:.2e} (tolerance {tolerance:g})"
    rows = np.arange(len(reference))
    ours, theirs = reference.argmax(axis=1), other.argmax(axis=1)
    differ = ours != theirs
    near_ties = reference[rows, ours] - reference[rows, theirs] <= 2 * tolerance
    assert not (differ & ~near_ties).any(), f"{int((differ & ~near_ties).sum())} labels differ beyond a near-tie"


@pytest.mark.parametrize("name", ["diagnosis", "section_header", "ner"])
def test_predict_on_the_device_matches_the_cpu(name: str, device: str, trained: Any) -> None:
    import torch

    from clintune.inference.predictor import Predictor

    folder, _ = trained(name, PRECISIONS[-1])
    on_device = Predictor.from_folder(folder)
    default = expected_default_precision(device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[default]
    parameter = next(on_device.model.parameters())
    assert (parameter.device.type, parameter.dtype) == (device, dtype)  # half precision by default on a GPU
    reference = _probability_rows(cpu_predictor(folder), folder)
    assert_same_labels(reference, _probability_rows(on_device, folder), PROBABILITY_TOLERANCE[default])
    fp32_on_device = cpu_predictor(folder)
    fp32_on_device.model = fp32_on_device.model.to(device)
    assert_same_labels(reference, _probability_rows(fp32_on_device, folder), PROBABILITY_TOLERANCE["fp32"])


def cpu_predictor(folder: Path) -> Any:
    """The folder's model loaded on the CPU in fp32, as on a machine without a GPU (not cast back from half precision)."""
    import torch

    from clintune.inference.predictor import Predictor

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)
        return Predictor.from_folder(folder)


@pytest.mark.parametrize("name", ["section_header", "ner"])
def test_eval_and_onnx_export_from_a_device_trained_folder(name: str, device: str, trained: Any, tmp_path: Path) -> None:
    from clintune import api
    from clintune.modeling.folder import read_model_folder

    require_module("onnxruntime")
    folder, _ = trained(name, PRECISIONS[-1])
    validation = read_model_folder(folder).config.data.validation
    metrics = api.evaluate(folder, validation, resamples=0).metrics
    headline = "f1" if name == "ner" else "f1_macro"
    assert 0.0 <= metrics[headline] <= 1.0
    info = api.export(folder, tmp_path / "onnx", check_data=validation).info
    assert (tmp_path / "onnx" / "model.onnx").is_file()
    # the check scores the PyTorch model on the device (half precision on a GPU) and the ONNX one on the CPU in fp32;
    # a barely trained tiny model has near-ties, where the two may part
    assert info["check"]["agreement"] >= 0.8, info["check"]


# -- out of memory -------------------------------------------------------------------------------

OOM_WAYS = ["injected"] if ON_CPU else ["injected", "allocator"]


def _raise_out_of_memory(*args: Any, **kwargs: Any) -> Any:
    import torch

    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")


@contextlib.contextmanager
def out_of_memory(way: str) -> Iterator[None]:
    """CUDA out of memory at the next forward pass: injected into BERT's forward, or (``allocator``) a
    memory cap far below what the model already holds, so the next real allocation fails."""
    import torch
    from transformers.models.bert import modeling_bert

    if way == "injected":
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(modeling_bert.BertModel, "forward", _raise_out_of_memory)
            yield
        return
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1e-6)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


@pytest.mark.parametrize("way", OOM_WAYS)
def test_out_of_memory_in_training_names_the_batch_size(way: str, device: str, tmp_path: Path) -> None:
    """In the library, a ``HardwareError``; through the CLI, exit status 2 with the fix and no traceback."""
    from clintune import api
    from clintune.config.loading import load_config
    from clintune.errors import HardwareError

    config = load_config(REPO / "configs" / "tiny" / "diagnosis.yaml", [f"output.dir={tmp_path / 'lib'}", "training.epochs=1"])
    with out_of_memory(way), pytest.raises(HardwareError) as raised:
        api.train(config)
    assert "CUDA ran out of memory training in batches of 16" in str(raised.value)
    assert "--set training.batch_size=8" in str(raised.value)
    assert not (tmp_path / "lib").exists()
    if way == "injected":
        with out_of_memory(way):
            result = invoke_cli("train", "configs/tiny/diagnosis.yaml", "--set", f"output.dir={tmp_path / 'cli'}",
                                "--set", "training.epochs=1")
        output = result.stdout + result.stderr
        assert result.returncode == 2, output[-3000:]
        assert "training.batch_size=8" in output and "Traceback" not in output


@pytest.mark.parametrize("way", OOM_WAYS)
def test_out_of_memory_in_predict_names_the_batch_size(way: str, device: str, trained: Any) -> None:
    from clintune.errors import HardwareError
    from clintune.inference.backends import CPU_BATCH_SIZE, GPU_BATCH_SIZE
    from clintune.inference.predictor import Predictor

    folder, _ = trained("diagnosis", PRECISIONS[-1])
    predictor = Predictor.from_folder(folder)
    # Under the allocator cap a tiny model's two short texts fit in memory the caching allocator already
    # holds (seen on an H200: no error); a full batch of long texts needs new memory.
    texts = ["fever and cough for three days", "a routine visit"] if way == "injected" else [" ".join(["fever cough"] * 200)] * 64
    with out_of_memory(way), pytest.raises(HardwareError) as raised:
        predictor.classify(texts)
    assert predictor.batch_size == (GPU_BATCH_SIZE if device == "cuda" else CPU_BATCH_SIZE)
    assert f"--batch-size {predictor.batch_size // 2}" in str(raised.value) and "training.eval_batch_size" in str(raised.value)
    if way == "injected":
        with out_of_memory(way):
            result = invoke_cli("predict", "--model", str(folder), "--text", "fever and cough for three days")
        output = result.stdout + result.stderr
        assert result.returncode == 2, output[-3000:]
        assert "--batch-size" in output and "Traceback" not in output
