"""Device and precision choice, and loading of tokenizers and models."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clintune.data.labels import LABELS_FILE, LabelEncoder
from clintune.errors import ClintuneError, HardwareError, ModelFolderError, listed
from clintune.runtime.files import read_json_object

logger = logging.getLogger(__name__)


# bf16 runs in the GPU's hardware from compute capability 8.0 (Ampere) on; below it (T4 7.5, V100 7.0)
# torch.cuda.is_bf16_supported() still says yes, but bf16 is emulated there, many times slower than fp16.
NATIVE_BF16_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Hardware:
    """What the current machine offers for training: ``bf16`` is whether bf16 runs at all (emulated
    included), ``compute_capability`` the CUDA device's (major, minor), ``name`` the device's name."""

    cuda: bool
    bf16: bool
    mps: bool
    compute_capability: tuple[int, int] | None = None
    name: str = ""

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "mps" if self.mps else "cpu"

    @property
    def native_bf16(self) -> bool:
        """Whether the GPU computes in bf16 in hardware (compute capability 8.0 or higher)."""
        return self.cuda and self.compute_capability is not None and self.compute_capability >= NATIVE_BF16_CAPABILITY


def detect_hardware() -> Hardware:
    import torch

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    capability = torch.cuda.get_device_capability() if cuda else None
    name = torch.cuda.get_device_name() if cuda else ""
    return Hardware(cuda=cuda, bf16=bf16, mps=mps, compute_capability=capability, name=name)


def default_precision(hardware: Hardware) -> str:
    """What ``auto`` means: bf16 on a GPU that has it in hardware, fp16 on an older GPU, fp32 without CUDA."""
    if not hardware.cuda:
        return "fp32"
    return "bf16" if hardware.native_bf16 else "fp16"


def resolve_precision(requested: str, hardware: Hardware) -> str:
    """The precision to train (or predict) in: ``auto`` is ``default_precision``.

    fp16/bf16 need CUDA (bf16 also needs support, emulated or not); asking for them
    elsewhere is an error rather than a silent fallback, since a CPU run in
    bf16 would be many times slower.
    """
    if requested == "auto":
        return default_precision(hardware)
    if requested == "fp32":
        return "fp32"
    if not hardware.cuda:
        raise HardwareError(
            f"training.precision: {requested} needs a CUDA GPU, and this machine has none ({hardware.device})\n"
            "  fix: set training.precision=auto or fp32"
        )
    if requested == "bf16" and not hardware.bf16:
        raise HardwareError("training.precision: this GPU does not support bf16\n  fix: use fp16 or auto")
    if requested == "bf16" and not hardware.native_bf16:
        logger.warning("training.precision: bf16 is emulated on this GPU (compute capability %s, below %d.%d) and runs "
                       "many times slower than fp16; auto chooses fp16 here", _capability(hardware), *NATIVE_BF16_CAPABILITY)
    return requested


def torch_dtype(precision: str) -> Any:
    """The torch dtype of a resolved precision (fp32, fp16, bf16)."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def out_of_memory(doing: str, batch_size: int, fix: str) -> HardwareError:
    """The error for CUDA running out of memory while ``doing`` batches of ``batch_size``. The fix is a smaller
    batch: ``fix`` says where it is set, with ``{smaller}`` standing for half the batch size."""
    smaller = max(1, batch_size // 2)
    return HardwareError(f"CUDA ran out of memory {doing} in batches of {batch_size}\n"
                         f"  fix: a smaller batch size: {fix.format(smaller=smaller)}")


def _capability(hardware: Hardware) -> str:
    return ".".join(map(str, hardware.compute_capability)) if hardware.compute_capability else "unknown"


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, tokenizer_config: dict[str, Any] | None = None) -> Any:
    """The fast tokenizer of a Hub name or folder (``AutoTokenizer``).

    ``tokenizer_config``: a model folder's tokenizer_config.json, already read; where the folder holds the
    tokenizer as one tokenizer.json (what ``clintune train`` writes) and no code of its own, the tokenizer
    is built from those two files, each read once, instead of transformers reading them again.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = _from_tokenizer_files(Path(name_or_path), tokenizer_config) if tokenizer_config else None
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except _load_errors() as exc:
        raise ClintuneError(_load_failure(name_or_path, "tokenizer", exc)) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ClintuneError(f"{name_or_path}: clintune needs a fast (Rust) tokenizer for subword alignment")
    return tokenizer


def _from_tokenizer_files(folder: Path, tokenizer_config: dict[str, Any]) -> Any:
    """The tokenizer that tokenizer_config.json's ``tokenizer_class`` names, built on the folder's tokenizer.json;
    None where the folder needs AutoTokenizer (other tokenizer files, code of its own, an unknown class)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    class_name = tokenizer_config.get("tokenizer_class")
    if not isinstance(class_name, str) or "auto_map" in tokenizer_config or not (folder / "tokenizer.json").is_file():
        return None
    if any((folder / name).is_file() for name in ("special_tokens_map.json", "added_tokens.json", "chat_template.jinja")):
        return None
    tokenizer_class = tokenizer_class_from_name(class_name)
    if tokenizer_class is None or not issubclass(tokenizer_class, PreTrainedTokenizerFast):  # not a tokenizers-backed class
        return None
    settings = {k: v for k, v in tokenizer_config.items() if k not in ("tokenizer_class", "backend", "is_local", "local_files_only")}
    with open(folder / "tokenizer.json", encoding="utf-8") as handle:
        backend = Tokenizer.from_str(handle.read())
    return tokenizer_class(tokenizer_object=backend, name_or_path=str(folder), **settings)


def load_model(
    task: Any, name_or_path: str, encoder: LabelEncoder, trust_remote_code: bool = False, pooling: str = "cls"
) -> Any:
    """A pretrained encoder to start training from, with a new head whose labels are the real class names.

    ``pooling="mean"`` puts clintune's mean-pooling head on the encoder (sequence
    tasks only); a clintune folder saved with that head is recognised whatever
    ``pooling`` says. A head already in the checkpoint is kept when its size fits
    the labels and replaced (logged) when it does not; the weights that start
    random are logged. For loading a trained folder, see :func:`load_trained_model`.
    """
    model, info = _from_pretrained(task, name_or_path, encoder, trust_remote_code, pooling)
    _log_fresh_weights(name_or_path, info)
    return model


def load_trained_model(task: Any, folder: str, encoder: LabelEncoder, trust_remote_code: bool = False,
                       hf_config: dict[str, Any] | None = None) -> Any:
    """A model folder written by ``clintune train``, with every weight read from the folder
    (``hf_config``: its config.json, already read, so that transformers does not read it again).

    A head whose size disagrees with ``labels.json``, and any weight missing from
    (or left over in) the folder, is a ``ModelFolderError``: loading on with random
    weights would give confident, meaningless predictions.
    """
    model, info = _from_pretrained(task, folder, encoder, trust_remote_code, "cls", hf_config)
    _require_every_weight(folder, info, encoder)
    return model


def _from_pretrained(task: Any, name_or_path: str, encoder: LabelEncoder, trust_remote_code: bool, pooling: str,
                     read: dict[str, Any] | None = None) -> tuple[Any, dict]:
    """The model and transformers' loading info (missing, unexpected and mismatched keys); raises nothing for those."""
    import transformers

    from clintune.modeling import heads

    labels = {"num_labels": len(encoder.classes), "id2label": encoder.id2label, "label2id": encoder.label2id}
    if encoder.task_type == "multilabel":  # transformers' pipeline() then applies a sigmoid, as clintune does
        labels["problem_type"] = "multi_label_classification"
    try:
        folder_config = read if read is not None else read_json_object(Path(name_or_path) / "config.json")  # Hub id: {}
        if heads.is_mean_pooled_config(folder_config):
            config = heads.backbone_config(name_or_path, folder_config, trust_remote_code, **labels)
            return heads.load_mean_pooled(name_or_path, config, trust_remote_code)
        if read is not None and read.get("model_type") in transformers.CONFIG_MAPPING and "auto_map" not in read:
            config = transformers.CONFIG_MAPPING[read["model_type"]].from_dict(read | labels)
        else:
            config = transformers.AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **labels)
        if pooling == "mean":
            return heads.new_mean_pooled(name_or_path, config, trust_remote_code)
        auto_class = getattr(transformers, task.auto_model_name)
        return auto_class.from_pretrained(
            name_or_path, config=config, trust_remote_code=trust_remote_code, ignore_mismatched_sizes=True, output_loading_info=True
        )
    except _load_errors() as exc:
        raise ClintuneError(_load_failure(name_or_path, "model", exc)) from exc


def _log_fresh_weights(name_or_path: str, info: dict) -> None:
    """Say which weights start random at the beginning of training (the new head, normally)."""
    for key, before, after in sorted(info.get("mismatched_keys", ())):
        logger.info("%s: %s has shape %s there; replaced by a new, randomly initialised %s for these labels",
                    name_or_path, key, tuple(before), tuple(after))
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        logger.info("%s: newly initialised (not in the checkpoint): %s", name_or_path, listed(missing))


def _require_every_weight(folder: str, info: dict, encoder: LabelEncoder) -> None:
    problems = []
    for key, stored, expected in sorted(info.get("mismatched_keys", ())):
        if len(stored) and len(expected) and stored[0] != expected[0] and stored[1:] == expected[1:]:
            problems.append(f"its classification head has {stored[0]} outputs ({key}), but {LABELS_FILE} lists "
                            f"{expected[0]} classes {list(encoder.classes)}")
        else:
            problems.append(f"{key} has shape {tuple(stored)} in the weights, {tuple(expected)} in config.json")
    for kind, keys in (("missing from", info.get("missing_keys")), ("not expected in", info.get("unexpected_keys"))):
        if keys:
            problems.append(f"{len(keys)} weight(s) {kind} the weights file: {listed(sorted(keys))}")
    if problems:
        raise ModelFolderError(
            f"{folder}: the weights do not fit the model the folder describes: " + "; ".join(problems) + "\n"
            "  fix: the folder was edited or mixed from two runs; retrain it or restore its original files"
        )


def _load_errors() -> tuple[type[Exception], ...]:
    """What a folder or Hub id that cannot be loaded raises: a missing file, a malformed config.json
    (``huggingface_hub``'s strict config fields raise their own error for a value of the wrong type)."""
    from huggingface_hub import errors

    return (OSError, ValueError, *((errors.StrictDataclassError,) if hasattr(errors, "StrictDataclassError") else ()))


def _first_line(exc: Exception, limit: int = 300) -> str:
    """The exception's type and the first line of its message (the full chain is under --verbose)."""
    line = (str(exc).strip().splitlines() or [""])[0]
    line = line if len(line) <= limit else line[:limit] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _load_failure(name_or_path: str, what: str, exc: Exception) -> str:
    if Path(name_or_path).exists():
        return f"model.name_or_path: cannot load the {what} from folder {name_or_path}: {exc}"
    return (
        f"model.name_or_path: cannot load the {what} {name_or_path!r}: it is not a local folder, "
        f"and the Hugging Face Hub could not provide it ({_first_line(exc)}).\n"
        "  fix: on a machine without internet, download the model elsewhere and point "
        "model.name_or_path at the local folder"
    )
