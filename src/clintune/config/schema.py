"""The config schema: one pydantic section per top-level key, unknown keys refused, and ``Config``.

Reading a file is ``loading``; the checks across fields are ``checks``. Nothing heavy (torch,
transformers) is imported here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from clintune.errors import ConfigError

TaskType = Literal["binary", "multiclass", "multilabel", "ner"]
DataFormat = Literal["auto", "csv", "tsv", "jsonl", "parquet", "conll", "brat", "spans"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]
CLASSIFICATION_FORMATS = ("csv", "tsv", "jsonl", "parquet")
NER_FORMATS = ("conll", "jsonl", "brat", "spans")
FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".conll": "conll",
    ".iob": "conll",
    ".bio": "conll",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskSection(_Section):
    name: str = "clintune-task"
    type: TaskType


class PreprocessingSection(_Section):
    unicode_nfkc: bool = True
    remove_patterns: list[str] = Field(default_factory=list)
    collapse_whitespace: bool = True
    lowercase: bool = False

    @field_validator("remove_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return patterns


class DataSection(_Section):
    train: str
    validation: str | None = None
    test: str | None = None
    format: DataFormat = "auto"
    text_column: str = "text"
    label_column: str = "label"
    # multilabel: a cell's labels joined by this (a JSONL/Parquet list needs none); an empty cell: no labels
    label_separator: str = Field(";", min_length=1)
    # multilabel, wide layout: one 0/1 column per label, instead of label_column
    label_columns: list[str] | None = None
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 42
    on_empty: Literal["error", "drop"] = "error"
    invalid_bio: Literal["error", "repair"] = "error"
    # Rows (or documents) that share this value stay on one side of every split; for brat the
    # document name is the group unless this names another field (doccano / Label Studio key).
    group_column: str | None = None
    on_leak: Literal["warn", "error"] = "warn"
    near_duplicate_threshold: float = Field(0.9, gt=0, le=1)
    split_sentences: bool = True
    overlapping_spans: Literal["error", "longest"] = "error"
    tokenization_cache: bool = True
    preprocessing: PreprocessingSection = Field(default_factory=PreprocessingSection)


class LabelsSection(_Section):
    classes: list[str] | None = None
    positive: str | None = None
    # What the data calls a label (a class value such as 0, or an entity type) -> the class name used.
    map: dict[str, str] | None = None
    # multilabel: a label in the data but not in classes is an error (error), or dropped and counted (ignore)
    unknown: Literal["error", "ignore"] = "error"

    @field_validator("map", mode="before")
    @classmethod
    def _map_keys_are_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            bad = [k for k, v in value.items() if not isinstance(v, (str, int)) or str(v).strip() == ""]
            if bad:
                raise ValueError(f"each value must be a class name (check {', '.join(map(str, bad))})")
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, classes: list[str] | None) -> list[str] | None:
        if classes is not None:
            duplicates = sorted({c for c in classes if classes.count(c) > 1})
            if duplicates:
                raise ValueError(f"labels listed twice: {', '.join(duplicates)}")
            if not classes:
                raise ValueError("must list at least two labels, or be left out")
        return classes


class ModelSection(_Section):
    name_or_path: str
    max_length: int = Field(256, gt=1, le=8192)
    long_text: Literal["truncate", "chunk"] = "truncate"
    stride: int = Field(32, ge=0)
    label_all_subwords: bool = False
    pooling: Literal["cls", "mean"] = "cls"
    trust_remote_code: bool = False


class TrainingSection(_Section):
    epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    # The new classification head starts from random weights; a higher rate lets it catch up with
    # the pretrained encoder in few steps. None: the same as learning_rate.
    head_learning_rate: float | None = Field(None, gt=0)
    batch_size: int = Field(16, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    seed: int = 42
    precision: Precision = "auto"
    class_weights: Literal["none", "balanced"] | dict[str, float] = "none"
    class_weights_power: float = Field(1.0, gt=0, le=1)
    early_stopping_patience: int | None = Field(None, gt=0)
    metric_for_best_model: str | None = None
    logging_steps: int = Field(50, gt=0)
    save_steps: int | None = Field(None, gt=0)
    save_total_limit: int = Field(2, gt=0)
    gradient_checkpointing: bool = False
    # batches padded to a multiple of this many tokens; auto: 64 on a GPU (few shapes), none on a CPU
    pad_to_multiple_of: Literal["auto"] | Annotated[int, Field(ge=1)] | None = "auto"
    dataloader_num_workers: int = Field(0, ge=0)
    ddp_find_unused_parameters: bool = False
    deepspeed: str | None = None

    @field_validator("class_weights", mode="before")
    @classmethod
    def _class_weights_shape(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("none", "balanced"):
            raise ValueError(f"must be 'none', 'balanced' or a mapping label: weight, got {value!r}")
        if isinstance(value, dict):
            bad = [k for k, v in value.items() if not isinstance(v, (int, float)) or v <= 0]
            if bad:
                raise ValueError(f"weights must be numbers > 0 (check {', '.join(map(str, bad))})")
            return {str(k): float(v) for k, v in value.items()}
        if value is None:
            return "none"
        return value


class EvaluationSection(_Section):
    bootstrap_resamples: int = Field(1000, ge=0)
    seed: int = 0


class DecisionSection(_Section):
    """The decision rule chosen at the end of training, on the validation split, and stored with the model.

    ``must_not_miss``: class (or group of classes joined by ``+``, e.g. ``D/LT+Serious``:
    "serious or worse", judged on their summed probability) -> recall target. Each gets the highest probability
    threshold at which it reaches that recall on validation; it is then predicted
    whenever its probability reaches the threshold, checked in the order given (put
    the costliest miss first). A binary task names its positive class.
    """

    must_not_miss: dict[str, float] = Field(default_factory=dict)

    @field_validator("must_not_miss", mode="before")
    @classmethod
    def _none_is_empty(cls, targets: Any) -> Any:
        return {} if targets is None else targets  # `must_not_miss: null` switches off an inherited rule

    @field_validator("must_not_miss")
    @classmethod
    def _recall_targets(cls, targets: dict[str, float]) -> dict[str, float]:
        bad = [f"{label}: {value}" for label, value in targets.items() if not 0 < value <= 1]
        if bad:
            raise ValueError(f"recall targets must be in (0, 1], got {', '.join(bad)}")
        return {str(label): float(value) for label, value in targets.items()}


class OutputSection(_Section):
    dir: str


class TrackingSection(_Section):
    """Experiment tracking. ``mlflow``: false (off), true (a local MLflow store: the SQLite file
    ``mlflow.db`` beside ``output.dir``, artifacts in ``mlartifacts/`` next to it; no server needed)
    or a tracking URI (``http://host:5000``, ``sqlite:///path.db``, ``postgresql://...``)."""

    mlflow: bool | str = False
    experiment: str | None = None  # default: task.name


class SearchRange(_Section):
    """One dimension of ``clintune tune``'s search: ``low``/``high`` (integers when both are whole
    numbers written without a point), optionally ``log: true``; or ``choices``."""

    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: list[Any] | None = None

    @field_validator("choices")
    @classmethod
    def _some_choices(cls, choices: list[Any] | None) -> list[Any] | None:
        if choices is not None and not choices:
            raise ValueError("an empty list of choices leaves nothing to search")
        return choices

    @property
    def is_integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.low, bool)

    def candidates(self) -> list[Any]:
        """The values a config must accept for this range to make sense: its ends, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def problems(self) -> list[str]:
        if self.choices is not None:
            return ["give either choices or low/high, not both"] if self.low is not None or self.high is not None else []
        if self.low is None or self.high is None:
            return ["needs low and high (a range) or choices"]
        if not self.low < self.high:
            return [f"empty range: low {self.low} is not below high {self.high}"]
        if self.log and self.low <= 0:
            return [f"log: true needs low > 0, got {self.low}"]
        return []


class Config(_Section):
    task: TaskSection
    data: DataSection
    labels: LabelsSection = Field(default_factory=LabelsSection)
    model: ModelSection
    training: TrainingSection = Field(default_factory=TrainingSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    decision: DecisionSection = Field(default_factory=DecisionSection)
    output: OutputSection
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    # `clintune tune`'s search space: dotted config key -> range or choices
    search: dict[str, SearchRange] = Field(default_factory=dict)
    _source_files: tuple[str, ...] = PrivateAttr(default=())

    def __eq__(self, other: object) -> bool:
        """Equal settings make equal configs, whichever files they were read from."""
        return isinstance(other, Config) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    @property
    def source_files(self) -> tuple[str, ...]:
        """The YAML files this config was read from: the file given, then each one it ``extends``."""
        return self._source_files

    def data_format(self, path: str | None = None) -> str:
        """The reader format for ``path`` (default: the training file)."""
        return resolve_format(self.data.format, path or self.data.train, self.task.type)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def resolve_format(declared: str, path: str, task_type: str) -> str:
    """``declared`` unless it is ``auto``; then guessed from the file suffix (a folder: brat).

    For NER, ``jsonl`` covers token lists and span records (doccano, Label
    Studio) alike; the reader tells them apart by their keys.
    """
    if declared != "auto":
        return declared
    if task_type == "ner" and Path(path).expanduser().is_dir():
        return "brat"
    suffix = Path(path).suffix.lower()
    if suffix == ".txt" and task_type == "ner":
        return "conll"
    return FORMAT_BY_SUFFIX.get(suffix, "csv")


def metric_names(task_type: str) -> tuple[str, ...]:
    """Headline metrics that can choose the best checkpoint for a task type."""
    if task_type == "binary":
        return ("f1", "precision", "recall", "accuracy", "roc_auc", "loss")
    if task_type == "multiclass":
        return ("f1_macro", "f1_weighted", "accuracy", "loss")
    if task_type == "multilabel":
        return ("f1_micro", "f1_macro", "f1_samples", "precision_at_5", "loss")
    return ("f1", "precision", "recall", "accuracy", "loss")


def default_metric(task_type: str) -> str:
    return {"multiclass": "f1_macro", "multilabel": "f1_micro"}.get(task_type, "f1")


def set_dotted(raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set ``dotted.key`` to ``value`` in the raw mapping ``raw``, making the sections on the way."""
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError([f"{where}: {'.'.join(parts[: depth + 1])} is a value, not a section"])
        node = child
    node[parts[-1]] = value
