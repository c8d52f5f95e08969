"""What every verb that reads a config's data does first: absolute paths, checked splits, fitted labels."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clintune.config.schema import Config
from clintune.data.checks import check_label_sets
from clintune.data.examples import Examples, TaggedSentences, describe_rows
from clintune.data.labels import LabelEncoder, did_you_mean, shown_labels
from clintune.data.leakage import Leak, find_leaks
from clintune.data.readers import read_split
from clintune.data.splits import examples_with, shared_groups, stratified_split
from clintune.errors import ClintuneError, DataError
from clintune.runtime import guards
from clintune.runtime.files import sha256_of

logger = logging.getLogger(__name__)

@dataclass
class PreparedData:
    """Checked splits and the label encoder fitted on training data."""

    train: Examples
    validation: Examples
    test: Examples | None
    encoder: LabelEncoder
    validation_source: str
    notes: list[str] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    # each data file's (or folder's) SHA-256 as it was when read, by path: run.json records these, and a file
    # whose hash has changed since is not trusted to the tokenisation cache
    file_hashes: dict[str, str] = field(default_factory=dict)

    def changed_files(self) -> list[str]:
        """The data files that no longer have the hash they had when they were read."""
        return [path for path, digest in self.file_hashes.items() if not Path(path).exists() or sha256_of(Path(path)) != digest]

    def summary(self) -> dict[str, Any]:
        counts = label_counts(self.train)
        return {
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "validation_source": self.validation_source,
            "test_examples": len(self.test) if self.test is not None else None,
            "classes": list(self.encoder.classes),
            "train_label_counts": {label: counts.get(label, 0) for label in self.encoder.classes},
            "notes": self.notes,
            "leakage": [leak.to_dict() for leak in self.leaks],
        }


def label_counts(data: Examples) -> Counter[str]:
    """How many examples hold each label (a multi-label note counts once for each of its labels)."""
    labels = data.labels or []
    return Counter(label for item in labels for label in item) if labels and isinstance(labels[0], list) else Counter(labels)


def resolve_paths(config: Config) -> Config:
    """The config with data and output paths made absolute (relative to the current folder).

    ``model.name_or_path`` becomes absolute only when it names an existing
    local folder; otherwise it stays a Hub id.
    """
    resolved = config.model_copy(deep=True)
    for split in ("train", "validation", "test"):
        value = getattr(resolved.data, split)
        if value is not None:
            setattr(resolved.data, split, str(Path(value).expanduser().absolute()))
    if resolved.training.deepspeed:
        resolved.training.deepspeed = str(Path(resolved.training.deepspeed).expanduser().absolute())
    local_model = Path(resolved.model.name_or_path).expanduser()
    if local_model.exists():
        resolved.model.name_or_path = str(local_model.absolute())
    check_model_path(resolved.model.name_or_path)
    resolved.output.dir = str(Path(resolved.output.dir).expanduser().absolute())
    return resolved


_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


def check_model_path(name_or_path: str) -> None:
    """A ``model.name_or_path`` that can only be a local folder must be one with a ``config.json``: said at
    ``validate``, not after the data is read and the Hub is asked for a folder that was mistyped.
    ``NAME`` and ``ORG/NAME`` may be Hub ids, which only loading can check."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ClintuneError(f"model.name_or_path: {path} is not a model folder (no config.json in it)\n"
                                "  fix: point it at the folder a model was saved to (save_pretrained), or give a Hub id")
        return
    if not _HUB_ID.fullmatch(name_or_path):
        raise ClintuneError(f"model.name_or_path: {name_or_path}: no such folder\n"
                            "  fix: check the path (relative paths start from the folder you run clintune in); "
                            "a Hub id looks like NAME or ORG/NAME")


def prepare_data(config: Config) -> PreparedData:
    """Read and check every split, fit the labels and split off validation data if needed.

    Explicit splits that share a group id are an error; duplicates and near
    duplicates across splits are reported (or an error, ``data.on_leak: error``).
    """
    hashes = {path: sha256_of(Path(path)) for path in (config.data.train, config.data.validation, config.data.test) if path}
    train = read_split(config, config.data.train)
    notes: list[str] = list(train.notes)
    if config.data.validation:
        validation = read_split(config, config.data.validation)
        notes += validation.notes
        validation_source = config.data.validation
    else:
        train, validation = stratified_split(train, config.data.validation_fraction, config.data.split_seed)
        by_group = " by group" if train.groups is not None else ""
        validation_source = f"{config.data.validation_fraction:.0%} of {config.data.train} (seed {config.data.split_seed}{by_group})"
        notes.append(f"validation: split off {validation_source}")
    test = read_split(config, config.data.test) if config.data.test else None
    if test is not None:
        notes += test.notes
    others = {"validation": validation} | ({"test": test} if test is not None else {})
    if config.task.type == "multilabel":
        encoder = _label_sets_encoder(config, train, others, notes)
    else:
        encoder = LabelEncoder.fit(train.labels or [], config.task.type, config.labels.classes, config.labels.positive)
    if config.labels.classes is not None and config.task.type != "multilabel":
        unknown = sorted(set(train.labels or []) - set(encoder.classes))
        if unknown:
            rows = examples_with(train, set(unknown))
            raise ClintuneError(
                f"{train.source}: {len(unknown)} label(s) not listed in labels.classes: {shown_labels(unknown)} "
                f"({describe_rows(train, rows)}){did_you_mean(unknown, encoder.classes)}\n"
                "  fix: add them to labels.classes or correct the data"
                + (" (or name them with labels.map)" if config.task.type != "ner" else "")
            )
    if config.task.type != "multilabel":
        check_label_sets(train, others, list(encoder.classes))
    splits = {"train": train, **others}
    explicit = {name: data for name, data in splits.items() if name == "train" or getattr(config.data, name)}
    clashes = shared_groups(explicit)
    if clashes:
        raise DataError("explicit splits share groups, so the same patient or document would train and score:\n  "
                        + "\n  ".join(clashes) + "\n  fix: move each group's examples into one split")
    leaks = check_leakage(splits, config.data.near_duplicate_threshold)
    if leaks and config.data.on_leak == "error":
        raise DataError("the splits share texts (possible leakage):\n  " + "\n  ".join(leak.describe() for leak in leaks)
                        + "\n  fix: remove the duplicates from one side, or set data.on_leak=warn to go on")
    notes += [f"possible leakage, {leak.describe()}" for leak in leaks]
    check_decision_targets(config, encoder, validation, validation_source)
    return PreparedData(train, validation, test, encoder, validation_source, notes, leaks, hashes)


def _label_sets_encoder(config: Config, train: Examples, others: dict[str, Examples], notes: list[str]) -> LabelEncoder:
    """Multi-label classes: labels.classes (or data.label_columns), else every label of the training data, sorted.
    A label of any split outside them is an error naming it and its rows, or (``labels.unknown: ignore``)
    dropped and counted; a class without a training example is an error."""
    listed = config.labels.classes or config.data.label_columns
    classes = list(listed) if listed else sorted(label_counts(train))
    check_label_set_splits(config, {"train": train, **others}, classes, "labels.classes" if listed else "the training data", notes)
    counts = label_counts(train)
    unseen = [label for label in classes if not counts.get(label)]
    if unseen:
        raise ClintuneError(f"{train.source}: {len(unseen)} listed label(s) have no training example: {shown_labels(unseen)}\n"
                            "  fix: add examples of them to the training data, or leave them out of labels.classes")
    if len(classes) < 2:
        raise ClintuneError(f"{train.source}: the training data holds {len(classes)} distinct label(s); at least two are needed")
    empty = {name: sum(1 for labels in split.labels or [] if not labels) for name, split in {"train": train, **others}.items()}
    if any(empty.values()):
        notes.append("notes without labels: " + ", ".join(f"{name} {n}" for name, n in empty.items()))
    return LabelEncoder(classes=tuple(classes), task_type="multilabel")


def check_label_set_splits(config: Config, splits: dict[str, Examples], classes: list[str], where: str, notes: list[str]) -> None:
    """Multi-label: a label outside ``classes`` is an error naming it and its rows, or (``labels.unknown: ignore``)
    dropped from its note and counted in ``notes``."""
    known = set(classes)
    for name, split in splits.items():
        unknown = sorted({label for labels in split.labels or [] for label in labels} - known)
        if not unknown:
            continue
        rows = [i for i, labels in enumerate(split.labels or []) if set(labels) - known]
        if config.labels.unknown == "error":
            raise ClintuneError(
                f"{split.source}: the {name} data holds {len(unknown)} label(s) not in {where}: {shown_labels(unknown)} "
                f"({describe_rows(split, rows)}){did_you_mean(unknown, classes)}\n"
                f"  fix: correct them, add them to {where}, or set labels.unknown: ignore to drop them (counted)")
        dropped = sum(len(set(labels) - known) for labels in split.labels or [])
        split.labels = [[label for label in labels if label in known] for labels in split.labels or []]
        notes.append(f"{name}: dropped {dropped} label(s) not in {where} from {len(rows)} note(s) ({shown_labels(unknown)}); "
                     "labels.unknown: ignore")


def check_leakage(splits: dict[str, Examples], threshold: float) -> list[Leak]:
    """Exact and near duplicates between every pair of splits (see ``clintune.data.leakage``)."""
    views = {name: comparable_texts(data) for name, data in splits.items()}
    names = list(views)
    leaks = []
    for a_index, a in enumerate(names):
        for b in names[a_index + 1:]:
            leak = find_leaks((a, *views[a]), (b, *views[b]), threshold)
            if leak is not None:
                leaks.append(leak)
    return leaks


def comparable_texts(data: Examples) -> tuple[list[str], list[str]]:
    """The texts to compare and their names: whole documents (or groups of them, ``data.group_column``) where
    sentences came from documents, each named by its first document (a group id is a cell of the data)."""
    if isinstance(data, TaggedSentences):
        sentences = [" ".join(tokens) for tokens in data.tokens]
        if data.groups is not None:
            documents: dict[str, list[str]] = {}
            names: dict[str, str] = {}
            for group, row, sentence in zip(data.groups, data.rows, sentences):
                documents.setdefault(group, []).append(sentence)
                names.setdefault(group, str(row).rsplit("@", 1)[0])  # a sentence is NAME@OFFSET
            return [" ".join(parts) for parts in documents.values()], list(names.values())
        return sentences, [f"{data.row_kind} {row}" for row in data.rows]
    return data.texts, [f"{data.row_kind} {row}" for row in data.rows]


def decision_targets(config: Config) -> list[str]:
    """``decision.must_not_miss`` as ``--tune-threshold`` targets (``LABEL:recall=VALUE``), in the order given."""
    return [f"{label}:recall={value}" for label, value in config.decision.must_not_miss.items()]


def check_decision_targets(config: Config, encoder: LabelEncoder, validation: Any, validation_source: str) -> None:
    """Refuse, before any training, must-not-miss targets that cannot be tuned on this validation split."""
    from clintune.evaluation.thresholds import parse_target
    from clintune.modeling.decision import class_ids

    for target in decision_targets(config):
        try:
            label = parse_target(target, encoder)[0]
        except ClintuneError as exc:
            raise ClintuneError(f"decision.must_not_miss: {str(exc).split(': ', 1)[-1]}") from exc
        members = set(encoder.classes[i] for i in class_ids(label, encoder))
        found = sum((label in gold) if isinstance(gold, list) else (gold in members) for gold in validation.labels or [])
        if not found:
            raise ClintuneError(
                f"decision.must_not_miss: the validation split ({validation_source}) has no {label!r} example to tune "
                "its threshold on\n  fix: give data.validation with such examples, or a larger data.validation_fraction"
            )
        if found < 20:
            logger.warning("decision.must_not_miss: %r has only %d validation example(s); its threshold will be rough "
                           "(the recall it achieves moves in steps of %.0f%%)", label, found, 100 / found)


def training_inputs(config: Config) -> list[guards.Input]:
    """Every path a run of ``config`` reads: its config files, data files, a local model folder, a DeepSpeed file."""
    inputs = [guards.Input("config", Path(path)) for path in config.source_files]
    inputs += [guards.Input(f"data.{split}", Path(getattr(config.data, split)), whole=Path(getattr(config.data, split)).is_dir())
               for split in ("train", "validation", "test") if getattr(config.data, split)]
    if Path(config.model.name_or_path).exists():
        inputs.append(guards.Input("model.name_or_path", Path(config.model.name_or_path), whole=True))
    if config.training.deepspeed:
        inputs.append(guards.Input("training.deepspeed", Path(config.training.deepspeed)))
    return inputs


def validate(config: Config) -> PreparedData:
    """Check config and data without loading a model; the checked splits and labels (``summary()``: the counts)."""
    return prepare_data(resolve_paths(config))


