"""Device and precision choice, and loading of tokenizers and models."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clintune.errors import ClintuneError, HardwareError
from clintune.labels import LabelEncoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hardware:
    """What the current machine offers for training."""

    cuda: bool
    bf16: bool
    mps: bool

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "mps" if self.mps else "cpu"


def detect_hardware() -> Hardware:
    import torch

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return Hardware(cuda=cuda, bf16=bf16, mps=mps)


def resolve_precision(requested: str, hardware: Hardware) -> str:
    """The precision to train in: ``auto`` is fp16 on CUDA and fp32 elsewhere.

    fp16/bf16 need CUDA (bf16 also needs hardware support); asking for them
    elsewhere is an error rather than a silent fallback, since a CPU run in
    bf16 would be many times slower.
    """
    if requested == "auto":
        return "fp16" if hardware.cuda else "fp32"
    if requested == "fp32":
        return "fp32"
    if not hardware.cuda:
        raise HardwareError(
            f"training.precision: {requested} needs a CUDA GPU, and this machine has none ({hardware.device})\n"
            "  fix: set training.precision=auto or fp32"
        )
    if requested == "bf16" and not hardware.bf16:
        raise HardwareError("training.precision: this GPU does not support bf16\n  fix: use fp16 or auto")
    return requested


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ClintuneError(_load_failure(name_or_path, "tokenizer", exc)) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ClintuneError(f"{name_or_path}: clintune needs a fast (Rust) tokenizer for subword alignment")
    return tokenizer


def load_model(
    task: Any, name_or_path: str, encoder: LabelEncoder, trust_remote_code: bool = False, pooling: str = "cls"
) -> Any:
    """A pretrained encoder with a fresh (or matching) head whose labels are the real class names.

    ``pooling="mean"`` puts clintune's mean-pooling head on the encoder (sequence
    tasks only); a folder saved with that head is recognised from its config.json
    whatever ``pooling`` says.
    """
    import transformers

    labels = {"num_labels": len(encoder.classes), "id2label": encoder.id2label, "label2id": encoder.label2id}
    try:
        config = transformers.AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **labels)
        from clintune import heads

        if heads.is_mean_pooled(config):
            return heads.load_mean_pooled(name_or_path, config)
        if pooling == "mean":
            return heads.new_mean_pooled(name_or_path, config, trust_remote_code)
        auto_class = getattr(transformers, task.auto_model_name)
        return auto_class.from_pretrained(
            name_or_path, config=config, trust_remote_code=trust_remote_code, ignore_mismatched_sizes=True
        )
    except (OSError, ValueError) as exc:
        raise ClintuneError(_load_failure(name_or_path, "model", exc)) from None


def _load_failure(name_or_path: str, what: str, exc: Exception) -> str:
    if Path(name_or_path).exists():
        return f"model.name_or_path: cannot load the {what} from folder {name_or_path}: {exc}"
    return (
        f"model.name_or_path: cannot load the {what} {name_or_path!r}: it is not a local folder, "
        f"and the Hugging Face Hub could not provide it ({type(exc).__name__}).\n"
        "  fix: on a machine without internet, download the model elsewhere and point "
        "model.name_or_path at the local folder"
    )
