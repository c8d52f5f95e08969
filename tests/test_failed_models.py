"""A model that learnt little says so: at the end of train, in its model card, and again at eval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from conftest import REPO, invoke_cli

from clintune.evaluation.metrics import multiclass_metrics, ner_metrics
from clintune.evaluation.scores import failure_signs

CLASSES = ("D/LT", "Serious", "Non-serious")


def test_a_classifier_that_predicts_one_class_is_flagged() -> None:
    gold = np.array([0, 1, 2, 2, 2, 1, 0, 2])
    constant = multiclass_metrics(gold, np.full(len(gold), 2), CLASSES)
    signs = failure_signs(constant)
    assert signs == ["it predicts only 1 of the 3 classes in the data", "recall is 0 for 'D/LT', 'Serious'"]
    # a weak model that still tries every class and finds some of each is not flagged
    assert failure_signs(multiclass_metrics(gold, np.array([0, 1, 2, 1, 2, 2, 2, 2]), CLASSES)) == []
    # a class the data does not hold cannot be missed
    assert failure_signs(multiclass_metrics(np.array([2, 2, 1]), np.array([2, 2, 1]), CLASSES)) == []


def test_an_ner_model_that_finds_nothing_is_flagged() -> None:
    gold = [["O", "B-Disease", "I-Disease"], ["B-Disease", "O"]]
    assert failure_signs(ner_metrics(gold, [["O", "O", "O"], ["O", "O"]])) == ["it found no entity in 2 sentences that hold 2"]
    assert failure_signs(ner_metrics(gold, [["O", "B-Disease", "O"], ["O", "O"]])) == []


def test_eval_warns_and_the_model_card_leads_with_the_warning(trained_models: dict[str, Path], tmp_path: Path) -> None:
    from clintune.evaluation.model_card import render_model_card

    model = tmp_path / "model"
    shutil.copytree(trained_models["diagnosis"], model)
    # a threshold no probability reaches: the model never says 'valid'
    (model / "decision.json").write_text(json.dumps({"threshold": 1.01}), encoding="utf-8")
    result = invoke_cli("eval", "--model", str(model), "--data", str(REPO / "data" / "diagnosis" / "test.csv"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "WARNING: this model may have learnt little: on test.csv, it predicts only 1 of the 2 classes" in result.stderr
    assert "recall is 0 for 'valid'" in result.stderr and "training.epochs" in result.stderr
    assert json.loads(result.stdout)["warnings"] == ["on test.csv: it predicts only 1 of the 2 classes in the data",
                                                    "on test.csv: recall is 0 for 'valid'"]
    metrics = json.loads((model / "metrics.json").read_text(encoding="utf-8"))
    assert "warnings" not in metrics  # the tiny model learnt its task
    metrics["warnings"] = ["on validation: recall is 0 for 'valid'"]
    (model / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    card = render_model_card(model)
    assert card.index("## Warning: this model may have learnt little") < card.index("## Labels")
    assert "- on validation: recall is 0 for 'valid'" in card


def test_eval_takes_the_models_own_bootstrap_settings(trained_models: dict[str, Path], tmp_path: Path) -> None:
    import yaml

    model = tmp_path / "model"
    shutil.copytree(trained_models["diagnosis"], model)
    settings = yaml.safe_load((model / "clintune.yaml").read_text(encoding="utf-8"))
    settings["evaluation"] = {"bootstrap_resamples": 40, "seed": 7}
    (model / "clintune.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    data = str(REPO / "data" / "diagnosis" / "test.csv")
    own = json.loads(invoke_cli("eval", "--model", str(model), "--data", data, "--json").stdout)["confidence_intervals"]["f1"]
    assert (own["resamples"], own["seed"]) == (40, 7)
    given = json.loads(invoke_cli("eval", "--model", str(model), "--data", data, "--json", "--bootstrap", "30", "--seed", "1").stdout)
    assert (given["confidence_intervals"]["f1"]["resamples"], given["confidence_intervals"]["f1"]["seed"]) == (30, 1)
