"""Batched inference over a trained model: logits, labels and entities.

Features are sorted by length, cut into batches that waste little on
padding (``length_batches``), padded per batch and run under
``torch.inference_mode()`` on one of two backends, the PyTorch model or an
ONNX Runtime session (``OnnxModel``), both reached through one forward
function (a padded batch in, a numpy array of logits out). Results come back
in input order, with the windows of a long text merged back into one result.
Checkpoint selection, ``clintune eval`` and ``clintune predict`` all go
through this one path.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clintune.config.schema import Config
from clintune.data.examples import preprocess_text
from clintune.data.labels import LabelEncoder
from clintune.data.tokenization import Encoded, encode_texts, encode_words, split_words
from clintune.errors import ClintuneError
from clintune.modeling.decision import DecisionRule, WindowLogits
from clintune.modeling.folder import ONNX_FILE, ModelFolder, check_remote_code, read_export_info, read_model_folder
from clintune.modeling.loading import detect_hardware, load_tokenizer, load_trained_model, out_of_memory, resolve_precision, torch_dtype
from clintune.modeling.tasks import (
    Entity,
    Prediction,
    SequenceClassification,
    TokenClassification,
    batch_collator,
    entities_from_words,
    padding_multiple,
    task_for,
)

logger = logging.getLogger(__name__)


# Measured with MiniLM on 2 CPU cores (100 MTS-Dialog dialogues, sorted by length): 55 texts/s at
# batches of 4-8, 38 at 32, 24 at 64, 40 one at a time. GPUs want wide batches.
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 64
# Texts (or sentences) tokenised and held at a time. Encodings, not texts, are what grows with the
# input (about 0.4 MB a text with PyTorch), so eval and the end of training read a file of any
# size in this much memory; length-sorting within a chunk this size keeps the batches as tight.
ENCODE_CHUNK = 2048
# A forward pass computes every padded position. Texts are sorted by length and a batch is closed early
# rather than let padding exceed this share of its positions: 8 MTS-Dialog dialogues taken at random
# (a web service's gathered requests) are 53% padding; one pass each costs less than that.
MAX_PADDING_SHARE = 0.2


@dataclass
class Predictor:
    """A model, its tokenizer, labels and the config it was trained with, ready to predict."""

    model: Any
    tokenizer: Any
    encoder: LabelEncoder
    config: Config
    batch_size: int = CPU_BATCH_SIZE
    decision: DecisionRule = field(default_factory=DecisionRule)
    show_progress: bool = False
    # How the note on long texts names what was read ("test" -> "test: 3 of 40 ..."); None: no note, where
    # the caller has already counted them (training counts the validation split once, not at every evaluation)
    long_text_note_as: str | None = ""
    # batches padded to a multiple of this many tokens (tasks.padding_multiple; a GPU's few shapes), or to the longest row
    pad_multiple: int | None = None

    @property
    def task(self) -> SequenceClassification | TokenClassification:
        return task_for(self.encoder.task_type)

    @classmethod
    def from_folder(
        cls, folder: str | Path, batch_size: int | None = None, show_progress: bool = False, threads: int | None = None, *,
        trust_remote_code: bool = False,
    ) -> Predictor:
        """Load a model folder written by ``clintune train`` or ``clintune export``.

        A PyTorch model goes to the GPU when there is one; an exported folder runs on
        ONNX Runtime. ``threads`` caps the CPU threads used for inference (PyTorch and
        ONNX Runtime); ``batch_size`` defaults to 8 on CPU and 64 on a GPU, and to 1 for a
        dynamic-int8 folder, whose passes then run side by side (see ``OnnxModel``).
        A folder that ships Python code of its own loads only with ``trust_remote_code``
        (see ``clintune.modeling.folder.check_remote_code``); what its ``clintune.yaml`` says does not count.
        """
        return cls.from_model_folder(read_model_folder(Path(folder)), batch_size, show_progress, threads,
                                     trust_remote_code=trust_remote_code)

    @classmethod
    def from_model_folder(
        cls, folder: ModelFolder, batch_size: int | None = None, show_progress: bool = False, threads: int | None = None, *,
        trust_remote_code: bool = False,
    ) -> Predictor:
        """``from_folder`` for a folder already read (see ``clintune.modeling.folder.read_model_folder``)."""
        from transformers.utils import logging as hf_logging

        check_remote_code(folder.path, folder.config, trust_remote_code)
        threads = threads or cpu_limit()  # a container's CPU limit, not the node's CPU count
        if threads:
            import torch

            torch.set_num_threads(threads)
        hf_logging.disable_progress_bar()
        tokenizer = load_tokenizer(str(folder.path), trust_remote_code)
        model, on_gpu = load_backend(folder, threads, batch_size, trust_remote_code=trust_remote_code)
        batch_size = forward_batch_size(folder, batch_size, on_gpu)
        return cls(model, tokenizer, folder.encoder, folder.config, batch_size, folder.decision.copy(), show_progress,
                   pad_multiple=padding_multiple("auto", on_gpu))

    # -- raw model outputs -------------------------------------------------

    def logits(self, features: list[dict[str, Any]], progress: Any = None) -> list[np.ndarray]:
        """Per-feature logits (token-level ones trimmed to the feature's length), in input order.
        ``progress(n)`` is told after each batch how many features it held."""
        import torch

        collate = batch_collator(self.task, self.tokenizer, self.pad_multiple, self.config.model.max_length)
        results: list[np.ndarray | None] = [None] * len(features)
        batches = length_batches([len(f["input_ids"]) for f in features], self.batch_size)
        collated = (collate_rows(collate, [features[i] for i in batch]) for batch in batches)
        # side by side (see OnnxModel) when there are passes enough to fill every thread, else in turn on all of them
        passes = getattr(self.model, "passes", 1)
        passes = passes if 1 < passes <= len(batches) else 1
        forward = forward_function(self.model, side_by_side=passes > 1)
        try:
            with torch.inference_mode(), ThreadPoolExecutor(passes) if passes > 1 else nullcontext() as pool:
                outputs = pool.map(forward, collated) if pool is not None else map(forward, collated)  # in order either way
                for batch_indices, output in zip(batches, outputs):
                    for row, index in enumerate(batch_indices):
                        length = len(features[index]["input_ids"])
                        results[index] = output[row, :length] if output.ndim == 3 else output[row]
                    if progress is not None:
                        progress(len(batch_indices))
        except torch.cuda.OutOfMemoryError as exc:
            raise out_of_memory("predicting", self.batch_size,
                                "--batch-size {smaller} (while training: --set training.eval_batch_size={smaller})") from exc
        return results  # type: ignore[return-value]

    def _chunked(self, examples: list[Any], encode: Any) -> Any:
        """For each chunk of ``ENCODE_CHUNK`` examples: its offset, its encoding and its features' logits; with
        one progress bar over all the examples and one note on the long ones at the end."""
        too_long = 0
        with _progress_bar(len(examples), self.show_progress) as bar:
            for start in range(0, len(examples), ENCODE_CHUNK):
                chunk = examples[start : start + ENCODE_CHUNK]
                encoded = encode(chunk)
                too_long += encoded.too_long
                share = len(chunk) / max(len(encoded.features), 1)  # a long text's windows advance the bar by one text in all
                yield start, encoded, self.logits(encoded.features, lambda n, share=share: bar.update(n * share))
        note = long_text_note(too_long, len(examples), self.config)
        if note and self.long_text_note_as is not None:
            logger.warning(f"{self.long_text_note_as}: {note}" if self.long_text_note_as else note)

    # -- classification ----------------------------------------------------

    def window_logits(self, texts: list[str]) -> WindowLogits:
        """Logits of every window of every raw text (one window each unless ``model.long_text: chunk``).

        The texts are preprocessed here, with the model's ``data.preprocessing``, exactly
        once: callers pass texts as the user or the data file gives them. They are
        tokenised ``ENCODE_CHUNK`` at a time, so memory does not grow with their number.
        """
        settings = self.config.model

        def encode(chunk: list[str]) -> Encoded:
            chunk = [preprocess_text(text, self.config.data.preprocessing) for text in chunk]
            return encode_texts(self.tokenizer, chunk, settings.max_length, long_text=settings.long_text, stride=settings.stride)

        logits, example_index = [], []
        for start, encoded, rows in self._chunked(texts, encode):
            logits += rows
            example_index.append(np.asarray(encoded.example_index, dtype=int) + start)
        stacked = np.stack(logits) if logits else np.zeros((0, len(self.encoder.classes)))
        index = np.concatenate(example_index) if example_index else np.zeros(0, dtype=int)
        return WindowLogits(stacked.astype(float), index, len(texts), multilabel=self.encoder.task_type == "multilabel")

    def class_probabilities(self, texts: list[str]) -> np.ndarray:
        """Class probabilities per raw text, after the model's temperature (windows averaged, see ``WindowLogits``)."""
        return self.window_logits(texts).probabilities(self.decision.temperature)

    def classify(self, texts: list[str]) -> list[Prediction]:
        """Label, confidence and class probabilities for each text, by the model's decision rule."""
        task = self.task
        assert isinstance(task, SequenceClassification), "classify() needs a classification model"
        return [task.decode(row, self.encoder, self.decision) for row in self.class_probabilities(texts)]

    # -- NER ---------------------------------------------------------------

    def tag_sentences(self, sentences: list[list[str]]) -> tuple[list[list[str]], list[list[float]]]:
        """A tag and a probability for every word of every pre-split sentence (``ENCODE_CHUNK`` sentences at a time)."""
        task = self.task
        assert isinstance(task, TokenClassification), "tag_sentences() needs an NER model"
        settings = self.config.model
        tags, scores = [], []
        for start, encoded, logits in self._chunked(
                sentences, lambda chunk: encode_words(self.tokenizer, chunk, settings.max_length, stride=settings.stride)):
            by_example: list[list[int]] = [[] for _ in range(encoded.n_examples)]
            for feature, example in enumerate(encoded.example_index):
                by_example[example].append(feature)
            for example, features in enumerate(by_example):
                sentence_tags, sentence_scores = task.word_tags(
                    [logits[f] for f in features], [encoded.word_ids[f] for f in features],
                    [encoded.word_starts[f] for f in features], len(sentences[start + example]), self.encoder,
                )
                tags.append(sentence_tags)
                scores.append(sentence_scores)
        return tags, scores

    def extract_entities(self, texts: list[str]) -> list[list[Entity]]:
        """Entities with character offsets into each raw text."""
        words = [split_words(text) for text in texts]
        tags, scores = self.tag_sentences([[w for w, _, _ in sentence] for sentence in words])
        return [entities_from_words(text, w, t, s) for text, w, t, s in zip(texts, words, tags, scores)]


def collate_rows(collate: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One forward pass's inputs (labels left out), by the task's ``collate``. A lone row needs no padding:
    its lists become one-row int64 arrays directly, what the collator builds at a tenth of its cost (0.01
    against 0.13 ms a text: 1-2% of an int8 folder's one-text passes)."""
    rows = [{k: v for k, v in row.items() if k != "labels"} for row in rows]
    if len(rows) == 1:
        return {k: np.asarray([v], dtype=np.int64) for k, v in rows[0].items()}
    return collate(rows)


def length_batches(lengths: list[int], batch_size: int, max_padding: float = MAX_PADDING_SHARE) -> list[list[int]]:
    """Indices of ``lengths`` in forward batches: shortest first, at most ``batch_size`` each, and a batch
    closed before the next (longer) item would make padding more than ``max_padding`` of its positions."""
    batches: list[list[int]] = []
    batch: list[int] = []
    tokens = 0
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        length = lengths[index]
        positions = length * (len(batch) + 1)  # sorted: the newcomer is the longest, every row is padded to it
        if batch and (len(batch) == batch_size or positions - (tokens + length) > max_padding * positions):
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(index)
        tokens += length
    if batch:
        batches.append(batch)
    return batches


def usable_cpus() -> int:
    """CPUs this process may use: its affinity where the platform tells it (else the machine's count),
    capped by its cgroup's CPU quota (``cpu_limit``)."""
    return cpu_limit() or _visible_cpus()


def cpu_limit() -> int | None:
    """The CPU count a cgroup quota holds this process to, where it is below the CPUs it sees; else None.

    PyTorch and ONNX Runtime start a thread per CPU they see. In a container with a CPU limit
    (Docker ``--cpus 2``, a Kubernetes ``limits.cpu``) on a 64-core node that is 64 threads taking
    turns on 2 CPUs' worth of time, so clintune then runs this many instead (``--threads`` overrides)."""
    quota = cpu_quota()
    return quota if quota is not None and quota < _visible_cpus() else None


def _visible_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_quota(cgroups: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """CPUs' worth of time this process's cgroup may use (quota over period, rounded up), or None without a quota.

    cgroup v2 (``cpu.max``: ``200000 100000``, or ``max``) and v1 (``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``, -1 for none), read in the process's own cgroup and every one above it
    (a limit anywhere above applies); the smallest quota wins."""
    try:
        lines = cgroups.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: one hierarchy
            folders, v1 = [root], False
        elif "cpu" in controllers.split(","):
            folders, v1 = [root / name for name in (controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu")], True
        else:
            continue
        relative = Path(path.strip().lstrip("/"))
        for base in dict.fromkeys(folders):
            for level in [relative, *relative.parents]:
                quota = _read_quota(base / level, v1)
                if quota is not None:
                    quotas.append(quota)
    return max(1, math.ceil(round(min(quotas), 3))) if quotas else None


def _read_quota(folder: Path, v1: bool) -> float | None:
    """Quota over period in one cgroup folder, or None where it sets none or the files are not there."""
    try:
        if v1:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        else:
            fields = (folder / "cpu.max").read_text().split()
            if fields[0] == "max":
                return None
            quota, period = int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def release_freed_memory() -> None:
    """Hand memory freed by finished work back to the system (glibc only; elsewhere nothing to do).

    glibc keeps what a chunk's tensors freed in fragmented heaps, so the process grows with every
    chunk of a long run: PyTorch predict peaked at 2.04 GB after 10,000 MTS-Dialog texts and 2.18 GB
    after 33,000. Trimming after each chunk costs milliseconds."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return
    trim(0)


def purge_jemalloc() -> bool:
    """Hand the pages jemalloc keeps after frees back to the system, all arenas at once; False when not under jemalloc.

    clintune runs jemalloc with its decay off (``clintune.runtime.allocator``): freed pages are kept for
    the next batch instead of faulted in again. In a Ray model actor those kept pages grew batch
    after batch (MiniLM int8, 1,000-text batches: 356 to 401 MB in 80 s), where decay kept them flat
    but cost PyTorch 27% of its speed. One purge after each batch bounds them to what one batch needs."""
    try:
        mallctl = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):  # another allocator
        return False
    return mallctl(f"arena.{_ALL_ARENAS}.purge".encode(), None, None, None, ctypes.c_size_t(0)) == 0


_ALL_ARENAS = 4096  # jemalloc's MALLCTL_ARENAS_ALL


def forward_batch_size(folder: ModelFolder, requested: int | None, on_gpu: bool, warn: bool = True) -> int:
    """Texts per forward pass: as asked; else one at a time for a dynamic-int8 ONNX folder; else 8 on CPU, 64 on a GPU.

    Dynamic int8 quantises each batch's activations with one scale for the whole batch, so a text's
    probabilities move with whatever shares its batch (MiniLM on MTS-Dialog: up to 0.12, 3 labels in 100
    changed between batches of 1 and 8). One text per pass makes every answer independent of the others:
    the same in ``predict``, ``eval``, the export check and the web service, whatever the input order.
    """
    if requested is not None:
        if requested > 1 and is_dynamic_int8(folder) and warn:
            logger.warning("batch size %d on a dynamic-int8 model: a text's answer will depend on the other texts "
                           "in its batch (leave --batch-size out to run one text at a time)", requested)
        return requested
    if is_dynamic_int8(folder):
        return 1
    return GPU_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE


def is_dynamic_int8(folder: ModelFolder) -> bool:
    """Whether the folder is an ONNX export with dynamic int8 weights (``clintune export --quantize int8``)."""
    return folder.is_onnx and read_export_info(folder.path).get("quantize") == "int8"


def long_text_note(too_long: int, n_examples: int, config: Config) -> str | None:
    """How many examples exceed ``max_length`` and what was done with them (None if none)."""
    if not too_long:
        return None
    settings = config.model
    if config.task.type == "ner" or settings.long_text == "chunk":
        how = f"read in overlapping windows (stride {settings.stride} tokens)"
    else:
        how = "truncated (set model.long_text=chunk to read them whole)"
    return f"{too_long} of {n_examples} example(s) exceed model.max_length={settings.max_length} tokens and were {how}"


def _progress_bar(total: int, show: bool) -> Any:
    """A bar over ``total`` texts (or a stand-in that ignores updates when hidden or when there is little to show)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predicting", unit="text", leave=False, disable=not show or total < 2 * CPU_BATCH_SIZE,
                bar_format="{l_bar}{bar}| {n:.0f}/{total} [{elapsed}<{remaining}, {rate_fmt}]")


# -- backends ---------------------------------------------------------------


def require_onnx(module: str) -> Any:
    """Import one of the ``onnx`` extra's modules, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ClintuneError(f"ONNX support needs {module}: pip install 'clintune[onnx]'") from None


# ONNX Runtime rewrites that make a dynamic-int8 encoder slower on CPU. Fusing the residual add into
# the layer norm (SkipLayerNormalization) took 13% of the time of int8 MiniLM, one thread, MTS-Dialog
# validation: 11.1 ms a text fused, 9.6 unfused (ONNX Runtime 1.32, AVX-512 VNNI; scripts/bench_int8_fusion.py).
# Unfused is the graph as exported; on those 100 dialogues its labels agree with the fused graph's and with the fp32 model's as often.
# No other single rewrite left out made a difference; an fp32 export gave the same logits and speed either way.
# Other CPUs (AVX2 only, ARM) and batched int8 passes were not measured.
SLOWER_WHEN_FUSED = ("SkipLayerNormFusion",)


class OnnxModel:
    """An ONNX Runtime session that answers like the PyTorch model's logits.

    With ``passes`` above 1, ``Predictor.logits`` runs that many forward passes side by side, each
    on one thread of a second session (``side_session``), instead of one pass at a time spread over
    ``threads``; fewer passes than that take the main session, one after another, on every thread. For one text per pass
    that keeps every core busy: dynamic-int8 MiniLM on MTS-Dialog, 2 cores, 163 texts/s against 133.

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
        disabled = SLOWER_WHEN_FUSED if is_dynamic_int8(folder) else ()
        return OnnxModel(folder.path / ONNX_FILE, threads, passes, disabled), False
    import torch

    model = load_trained_model(task_for(folder.encoder.task_type), str(folder.path), folder.encoder, trust_remote_code)
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
