"""Task configs: YAML in, one typed and validated ``Config`` out.

Loading resolves ``extends:`` chains, ``${VAR:-default}`` environment
references and ``--set dotted.key=value`` overrides, then validates the whole
tree at once so that a user sees every problem, each named by its dotted path.
Nothing heavy (torch, transformers) is imported here.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

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


# --------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, merge, override and validate a config file."""
    sources: list[Path] = []
    raw = load_raw_config(Path(path), _read=sources)
    for override in overrides or []:
        apply_override(raw, override)
    raw = interpolate_env(raw)
    config = validate_config(raw, source=str(path))
    config._source_files = tuple(str(p) for p in sources)
    return config


def load_raw_config(path: Path, _seen: tuple[Path, ...] = (), _read: list[Path] | None = None) -> dict[str, Any]:
    """The config at ``path`` merged over the configs it ``extends`` (each file read is appended to ``_read``)."""
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError([f"config file not found: {path}"])
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError([f"extends: circular chain {chain}"], source=str(path))
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=str(path)) from exc
    if _read is not None:
        _read.append(path.absolute())
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(["the top level must be a mapping of sections (task, data, ...)"], source=str(path))
    parent_ref = loaded.pop("extends", None)
    if parent_ref is None:
        return loaded
    if not isinstance(parent_ref, str):
        raise ConfigError(["extends: must be the path of one YAML file"], source=str(path))
    parent = load_raw_config(path.parent / parent_ref, (*_seen, resolved), _read)
    return deep_merge(parent, loaded)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` laid over ``base``; nested mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``dotted.key=value`` in ``raw``; the value is parsed as a YAML scalar."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError([f"--set {override!r}: expected dotted.key=value, e.g. training.epochs=5"])
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    set_dotted(raw, key, value, f"--set {key}")


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


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(value: Any) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of the tree."""
    if isinstance(value, dict):
        return {k: interpolate_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v) for v in value]
    if isinstance(value, str):
        return _ENV_REF.sub(_env_value, value)
    return value


def _env_value(match: re.Match[str]) -> str:
    name, default = match.group(1), match.group(2)
    if name in os.environ:
        return os.environ[name]
    if default is not None:
        return default
    raise ConfigError([f"environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"])


def validate_config(raw: dict[str, Any], source: str | None = None) -> Config:
    """Validate a raw mapping, reporting every schema and cross-field problem at once."""
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(err) for err in exc.errors()], source=source) from exc
    problems = cross_field_problems(config)
    if problems:
        raise ConfigError(problems, source=source)
    return config


def _decision_problems(config: Config) -> list[str]:
    targets = config.decision.must_not_miss
    if not targets:
        return []
    if config.task.type == "ner":
        return ["decision.must_not_miss: applies to classification tasks, not NER"]
    classes, problems = config.labels.classes, []
    groups = [label for label in targets if "+" in label and (classes is None or label not in classes)]
    unknown = [label for label in targets if classes is not None and label not in classes
               and not all(part.strip() in classes for part in label.split("+"))]
    if unknown:
        problems.append(f"decision.must_not_miss: {', '.join(map(repr, unknown))} not in labels.classes {classes}")
    for group in groups:
        parts = [part.strip() for part in group.split("+")]
        if config.task.type == "binary":
            problems.append(f"decision.must_not_miss: {group!r}: a binary task has no groups of classes; name its positive class")
        elif len(set(parts)) < len(parts):
            problems.append(f"decision.must_not_miss: {group!r} names a class twice")
        elif classes is not None and set(parts) >= set(classes):
            problems.append(f"decision.must_not_miss: {group!r} joins every class, so it would always be predicted")
    if config.task.type == "binary" and len(targets) > 1:
        problems.append("decision.must_not_miss: a binary task has one threshold, for its positive class; name only that class")
    return problems


def cross_field_problems(config: Config) -> list[str]:
    """Problems that involve more than one key."""
    problems: list[str] = []
    task_type = config.task.type
    for split in ("train", "validation", "test"):
        path = getattr(config.data, split)
        if path is None:
            continue
        fmt = config.data_format(path)
        allowed = NER_FORMATS if task_type == "ner" else CLASSIFICATION_FORMATS
        if fmt not in allowed:
            problems.append(
                f"data.format: {fmt!r} (for data.{split}) does not suit task.type {task_type!r}; "
                f"use one of {', '.join(allowed)}"
            )
    classes = config.labels.classes
    if classes is not None and len(classes) < 2:
        problems.append("labels.classes: needs at least two labels")
    if task_type == "binary":
        if classes is not None and len(classes) != 2:
            problems.append(f"labels.classes: a binary task needs exactly two labels, got {len(classes)}")
        if classes is not None and config.labels.positive is not None and config.labels.positive not in classes:
            problems.append(f"labels.positive: {config.labels.positive!r} is not one of labels.classes {classes}")
    elif config.labels.positive is not None:
        problems.append("labels.positive: only binary tasks have a positive label")
    problems += _decision_problems(config)
    problems += _multilabel_problems(config)
    if task_type == "ner" and classes is not None:
        bad = [c for c in classes if c != "O" and not re.match(r"^[BI]-.+", c)]
        if bad:
            problems.append(f"labels.classes: NER tags must be O, B-TYPE or I-TYPE; not {', '.join(bad)}")
    problems += _label_map_problems(config)
    problems += _search_problems(config)
    if config.data.group_column and task_type == "ner" and config.data_format() == "conll":
        problems.append("data.group_column: CoNLL sentences carry no group ids; group brat or span documents, "
                        "or classification rows, or leave it out")
    if task_type == "ner" and config.model.pooling != "cls":
        problems.append("model.pooling: pooling chooses how a whole text is summarised; NER tags every token, so leave it out")
    if config.model.stride * 2 >= config.model.max_length:
        problems.append(
            f"model.stride: {config.model.stride} overlap tokens leave too little of each "
            f"{config.model.max_length}-token window; use less than half of model.max_length"
        )
    weights = config.training.class_weights
    if isinstance(weights, dict) and classes is not None:
        unknown = sorted(set(weights) - set(classes))
        if unknown:
            problems.append(f"training.class_weights: labels not in labels.classes: {', '.join(unknown)}")
    metric = config.training.metric_for_best_model
    if metric is not None and metric not in metric_names(task_type):
        hint = _did_you_mean(metric, metric_names(task_type))
        problems.append(
            f"training.metric_for_best_model: {metric!r} is not a {task_type} metric{hint}; "
            f"choose from {', '.join(metric_names(task_type))}"
        )
    return problems


def _multilabel_problems(config: Config) -> list[str]:
    """Settings that only multi-label coding takes, and what it cannot take."""
    problems = []
    if config.task.type != "multilabel":
        if config.data.label_columns is not None:
            problems.append("data.label_columns: one 0/1 column per label is a multi-label layout; set task.type: multilabel")
        if config.labels.unknown != "error":
            problems.append("labels.unknown: applies to multi-label data (task.type: multilabel)")
        return problems
    groups = [label for label in config.decision.must_not_miss if "+" in label and label not in (config.labels.classes or [])]
    if groups:
        problems.append(f"decision.must_not_miss: {', '.join(map(repr, groups))}: a multi-label model's labels are independent, "
                        "so their probabilities do not add up to a group's; give each label its own recall target")
    separator = config.data.label_separator
    split_names = [label for label in config.labels.classes or [] if separator in label]
    if split_names and config.data.label_columns is None:
        problems.append(f"data.label_separator: {separator!r} is part of the label name(s) {', '.join(map(repr, split_names))}, "
                        "so a cell would split them in pieces; choose a separator no label contains (e.g. '|')")
    columns = config.data.label_columns
    if columns is not None:
        if len(columns) < 2 or len(set(columns)) < len(columns):
            problems.append("data.label_columns: list two or more distinct columns, one per label")
        elif config.labels.classes is not None and list(config.labels.classes) != list(columns):
            problems.append("data.label_columns: the columns are the labels; leave labels.classes out, or list the same names")
    return problems


def _label_map_problems(config: Config) -> list[str]:
    """``labels.map`` must lead to the classes listed (entity types, for NER: B-/I- tags in labels.classes)."""
    mapping, classes = config.labels.map, config.labels.classes
    if not mapping or classes is None:
        return []
    if config.task.type == "ner":
        known = {c[2:] for c in classes if c != "O"}
        unknown = sorted({v for v in mapping.values() if v not in known})
        what = "entity types of labels.classes"
    else:
        known = set(classes)
        unknown = sorted({v for v in mapping.values() if v not in known})
        what = "labels.classes"
    if unknown:
        return [f"labels.map: maps to {', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} "
                f"not among the {what} ({', '.join(sorted(known))})"]
    return []


UNSEARCHABLE = ("task", "output", "search", "tracking")
# Settings that would make trials' objective values incomparable, or that the objective ignores: why.
_SAME_DATA = "each trial must be scored on the same examples, or their values cannot be compared"
UNSEARCHABLE_KEYS = {
    "data.train": _SAME_DATA, "data.validation": _SAME_DATA, "data.test": "the test split plays no part in a trial's objective",
    "data.validation_fraction": _SAME_DATA, "data.split_seed": _SAME_DATA, "data.group_column": _SAME_DATA,
    "training.metric_for_best_model": "it is the objective itself: set it outside search:",
    "decision": "trials are scored by the most probable class; tune a rule on the best model afterwards (eval --tune-threshold)",
    "evaluation": "bootstrap settings do not change a trial's objective",
}


def _search_problems(config: Config) -> list[str]:
    """Each searched key names a setting (not a section) that accepts every end of its range and every choice."""
    if not config.search:
        return []
    problems: list[str] = []
    raw = config.to_dict()
    raw["search"] = {}
    base_problems = set(cross_field_problems(Config.model_validate(raw)))  # reported once, by the caller, not per candidate
    for key, searched in config.search.items():
        where = f"search.{key}"
        parts = key.split(".")
        if parts[0] in UNSEARCHABLE:
            problems.append(f"{where}: {parts[0]}.* cannot be searched")
            continue
        reason = next((why for prefix, why in UNSEARCHABLE_KEYS.items() if key == prefix or key.startswith(prefix + ".")), None)
        if reason:
            problems.append(f"{where}: cannot be searched: {reason}")
            continue
        unknown = _unknown_setting(parts)
        if unknown:
            problems.append(f"{where}: {unknown}")
            continue
        own = searched.problems()
        problems += [f"{where}: {problem}" for problem in own]
        if own:
            continue
        for value in searched.candidates():
            raw = config.to_dict()
            raw["search"] = {}
            set_dotted(raw, key, value, where)
            try:
                candidate = Config.model_validate(raw)
            except ValidationError as exc:
                problems += [f"{where}: {value!r} is not a valid {key}: {_describe(err)}" for err in exc.errors()]
                continue
            problems += [f"{where}: with {key}={value!r}: {problem}" for problem in cross_field_problems(candidate)
                         if problem not in base_problems]
    return problems


def _unknown_setting(parts: list[str]) -> str | None:
    """Why the dotted key ``parts`` does not name one setting of the config, or None when it does."""
    for depth, part in enumerate(parts):
        known = _fields_at(parts[:depth])
        if part not in known:
            return f"unknown key {'.'.join(parts[: depth + 1])!r}{_did_you_mean(part, known)}"
    if _fields_at(parts):
        return f"{'.'.join(parts)} is a section; search one of its keys ({', '.join(_fields_at(parts))})"
    return None


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


def _describe(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    path = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        known = _fields_at(loc[:-1])
        return f"{path}: unknown key{_did_you_mean(loc[-1], known)}"
    if error["type"] == "missing":
        return f"{path}: required, but missing"
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    if error["type"] == "literal_error":
        return f"{path}: {message}, got {error.get('input')!r}"
    return f"{path}: {message[0].lower() + message[1:]}"


def _fields_at(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


# Names users bring from Hugging Face scripts and notebooks.
KNOWN_ALIASES = {
    "lr": "learning_rate",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "fp16": "precision",
    "bf16": "precision",
    "model_name": "name_or_path",
    "model_name_or_path": "name_or_path",
    "output_dir": "dir",
    "max_seq_length": "max_length",
    "warmup_steps": "warmup_ratio",
}


def _did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    alias = KNOWN_ALIASES.get(word)
    if alias in candidates:
        return f" (did you mean {alias!r}?)"
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def save_config(config: Config, path: Path) -> None:
    """Write the fully resolved config as YAML."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
