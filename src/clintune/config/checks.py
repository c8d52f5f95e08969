"""Validating a raw config tree: schema errors and cross-field problems, all reported at once, each named
by its dotted path with a "did you mean" hint; and the checks of a ``search:`` section's ranges.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from clintune.config.schema import CLASSIFICATION_FORMATS, NER_FORMATS, Config, metric_names, set_dotted
from clintune.errors import ConfigError


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
