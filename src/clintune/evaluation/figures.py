"""Which figures a person reads beside the decision rule in force, and under which rule each was measured.

``metrics.json`` holds the figures of the end of training (``validation``,
``test``), each with the rule it was measured under (its ``decision_rule``). When
``eval --tune-threshold`` / ``--fit-temperature`` or ``cv --train-final``
stores another rule, the figures of the data it was tuned or checked on,
measured under that rule, go beside them under ``rule_check`` (with the same
data scored by the default rule). ``figures_in_force`` picks what the model
card, ``GET /v1/model`` and the page show next to the rule: only figures
measured under it, each saying where it was measured and whether the rule was
tuned there ("tuned here: optimistic"); the training-time figures of an
earlier rule are shown only under that label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

RULE_CHECK = "rule_check"
TUNED_HERE = "tuned here: optimistic"
NOT_CALIBRATION = ("calibration",)  # bins per example range: the report's, not the model folder's


@dataclass
class FigureSet:
    """One data set's figures under one rule, and the same data scored by the default rule when a rule changed it."""

    name: str  # "validation", "test", or the file a rule was checked on
    metrics: dict[str, Any]
    default_rule: dict[str, Any] | None = None
    note: str | None = None  # TUNED_HERE where the rule's thresholds were chosen on this very data


@dataclass
class FiguresInForce:
    """What to show beside ``rule``: the figures measured under it and, labelled apart, those of an earlier rule."""

    rule: str
    current: list[FigureSet] = field(default_factory=list)
    earlier_rule: str | None = None
    earlier: list[FigureSet] = field(default_factory=list)


def rule_check_record(rule: str, data_name: str, metrics: dict[str, Any], default_rule: dict[str, Any] | None,
                      tuned_here: bool) -> dict[str, Any]:
    """The ``rule_check`` entry of ``metrics.json`` for a rule just stored, measured on ``data_name``."""
    return {
        "rule": rule, "data": data_name, "tuned_here": tuned_here,
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": {k: v for k, v in metrics.items() if k not in NOT_CALIBRATION},
        "default_rule": {k: v for k, v in (default_rule or {}).items() if k not in NOT_CALIBRATION} or None,
    }


def figures_in_force(metrics: dict[str, Any], rule: str) -> FiguresInForce:
    """The figures measured under ``rule`` (the description of the rule in force), from a folder's ``metrics.json``.
    An NER folder's figures have no rule: they are always in force."""
    trained_under = (metrics.get("validation") or {}).get("decision_rule", rule)
    default = metrics.get("default_rule") or {}
    tuned_on_validation = bool(default) and not metrics.get("must_not_miss_unmet")
    training = [
        FigureSet(split, metrics[split], default.get(split), TUNED_HERE if split == "validation" and tuned_on_validation else None)
        for split in ("validation", "test") if isinstance(metrics.get(split), dict)
    ]
    check = metrics.get(RULE_CHECK)
    figures = FiguresInForce(rule)
    if check and check.get("rule") == rule:
        figures.current.append(FigureSet(check["data"], check["metrics"], check.get("default_rule"),
                                         TUNED_HERE if check.get("tuned_here") else None))
    if trained_under == rule:
        figures.current += training
    elif training:
        figures.earlier_rule, figures.earlier = trained_under, training
    return figures


def store_rule_check(folder: Any, record: dict[str, Any]) -> None:
    """Put ``record`` (``rule_check_record``) into the folder's ``metrics.json``; a folder without one has no figures to fix."""
    import json

    from clintune.runtime.files import write_json

    path = folder / "metrics.json"
    if path.is_file():
        metrics = json.loads(path.read_text(encoding="utf-8"))
        write_json(path, metrics | {RULE_CHECK: record})
