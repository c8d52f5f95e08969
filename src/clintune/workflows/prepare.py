"""What every verb that reads a config's data does first: absolute paths, checked splits, fitted labels."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clintune import guards
from clintune.config import Config
from clintune.data import Examples, TextExamples, check_label_sets, count_overlap, preprocessed, read_split, stratified_split
from clintune.errors import ClintuneError
from clintune.labels import LabelEncoder

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

    def summary(self) -> dict[str, Any]:
        counts = Counter(self.train.labels or [])
        return {
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "validation_source": self.validation_source,
            "test_examples": len(self.test) if self.test is not None else None,
            "classes": list(self.encoder.classes),
            "train_label_counts": {label: counts.get(label, 0) for label in self.encoder.classes},
            "notes": self.notes,
        }


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
    resolved.output.dir = str(Path(resolved.output.dir).expanduser().absolute())
    return resolved


def prepare_data(config: Config) -> PreparedData:
    """Read and check every split, fit the labels and split off validation data if needed."""
    train = read_split(config, config.data.train)
    notes: list[str] = []
    if config.data.validation:
        validation = read_split(config, config.data.validation)
        validation_source = config.data.validation
    else:
        train, validation = stratified_split(train, config.data.validation_fraction, config.data.split_seed)
        validation_source = f"{config.data.validation_fraction:.0%} of {config.data.train} (seed {config.data.split_seed})"
        notes.append(f"validation: split off {validation_source}")
    test = read_split(config, config.data.test) if config.data.test else None
    encoder = LabelEncoder.fit(train.labels or [], config.task.type, config.labels.classes, config.labels.positive)
    if config.labels.classes is not None:
        unknown = sorted(set(train.labels or []) - set(encoder.classes))
        if unknown:
            raise ClintuneError(
                f"{train.source}: labels not listed in labels.classes: {', '.join(unknown)}\n"
                "  fix: add them to labels.classes or correct the data"
            )
    others = {"validation": validation} | ({"test": test} if test is not None else {})
    check_label_sets(train, others, list(encoder.classes))
    if test is not None and isinstance(train, TextExamples) and isinstance(test, TextExamples):
        steps = config.data.preprocessing
        overlap = count_overlap(preprocessed(train, steps), preprocessed(test, steps))  # type: ignore[arg-type]
        if overlap:
            notes.append(f"{overlap} test text(s) also appear in the training data; test metrics may be optimistic")
    check_decision_targets(config, encoder, validation, validation_source)
    return PreparedData(train, validation, test, encoder, validation_source, notes)


def decision_targets(config: Config) -> list[str]:
    """``decision.must_not_miss`` as ``--tune-threshold`` targets (``LABEL:recall=VALUE``), in the order given."""
    return [f"{label}:recall={value}" for label, value in config.decision.must_not_miss.items()]


def check_decision_targets(config: Config, encoder: LabelEncoder, validation: Any, validation_source: str) -> None:
    """Refuse, before any training, must-not-miss targets that cannot be tuned on this validation split."""
    from clintune.thresholds import parse_target

    for target in decision_targets(config):
        try:
            label = parse_target(target, encoder)[0]
        except ClintuneError as exc:
            raise ClintuneError(f"decision.must_not_miss: {str(exc).split(': ', 1)[-1]}") from None
        found = (validation.labels or []).count(label)
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
    inputs += [guards.Input(f"data.{split}", Path(getattr(config.data, split)))
               for split in ("train", "validation", "test") if getattr(config.data, split)]
    if Path(config.model.name_or_path).exists():
        inputs.append(guards.Input("model.name_or_path", Path(config.model.name_or_path), whole=True))
    if config.training.deepspeed:
        inputs.append(guards.Input("training.deepspeed", Path(config.training.deepspeed)))
    return inputs


def validate(config: Config) -> dict[str, Any]:
    """Check config and data without loading a model; returns a summary of the data."""
    config = resolve_paths(config)
    return prepare_data(config).summary()


