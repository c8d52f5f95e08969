"""``decision.must_not_miss``: a recall target tuned on validation at the end of training, stored with the
model, applied by eval and predict, and its cost shown beside the default rule's numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from sklearn.metrics import precision_recall_fscore_support

from clintune import api
from clintune.config.loading import load_config
from clintune.data.readers import read_split
from clintune.errors import ClintuneError, ConfigError
from clintune.inference.predictor import Predictor
from clintune.modeling.decision import DecisionRule

CONFIG = REPO / "configs" / "tiny" / "seriousness.yaml"
CLASSES = ["D/LT", "Serious", "Non-serious"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["decision.must_not_miss={D/LT: 1.5}"], "recall targets must be in (0, 1]"),
    (["decision.must_not_miss={Fatal: 0.9}"], "'Fatal' not in labels.classes"),
])
def test_bad_targets_are_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")):
        load_config(CONFIG, overrides)


def test_ner_and_two_binary_targets_are_refused() -> None:
    with pytest.raises(ConfigError, match="classification tasks, not NER"):
        load_config(REPO / "configs" / "tiny" / "ner.yaml", ["decision.must_not_miss={B-Disease: 0.9}"])
    with pytest.raises(ConfigError, match="one threshold, for its positive class"):
        load_config(REPO / "configs" / "tiny" / "diagnosis.yaml", ["decision.must_not_miss={valid: 0.9, invalid: 0.9}"])


def test_a_target_without_validation_examples_stops_before_training(tmp_path: Path) -> None:
    validation = tmp_path / "v.jsonl"
    validation.write_text("".join(json.dumps({"Narrative": f"mild rash number {i}", "Seriousness": "Non-serious"}) + "\n"
                                  for i in range(3)) + json.dumps({"Narrative": "admitted", "Seriousness": "Serious"}) + "\n")
    config = load_config(CONFIG, [f"output.dir={tmp_path / 'out'}", f"data.validation={validation}", "data.test=null",
                                  "decision.must_not_miss={D/LT: 0.9}"])
    with pytest.raises(ClintuneError, match="has no 'D/LT' example to tune its threshold on"):
        api.train(config)
    assert not (tmp_path / "out").exists()


def hand_predictions(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """D/LT wherever its probability reaches the threshold, else the most probable class."""
    return np.where(probabilities[:, 0] >= threshold, 0, probabilities.argmax(axis=1))


def per_class(gold: np.ndarray, predicted: np.ndarray) -> dict[str, tuple[float, float]]:
    precision, recall, _, _ = precision_recall_fscore_support(gold, predicted, labels=[0, 1, 2], zero_division=0)
    return {label: (round(float(p), 6), round(float(r), 6)) for label, p, r in zip(CLASSES, precision, recall)}


def reported(per_class_metrics: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
    return {label: (round(row["precision"], 6), round(row["recall"], 6)) for label, row in per_class_metrics.items()}


@pytest.fixture(scope="module")
def tuned_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny seriousness model after 2 epochs (an imperfect model, so the threshold moves predictions)."""
    out = tmp_path_factory.mktemp("must-not-miss") / "model"
    config = load_config(CONFIG, [f"output.dir={out}", "training.epochs=2", "decision.must_not_miss={D/LT: 1.0}",
                                  "evaluation.bootstrap_resamples=0"])
    api.train(config)
    return out


def split(name: str) -> tuple[list[str], np.ndarray]:
    data = read_split(load_config(CONFIG), str(REPO / "data" / "seriousness" / f"{name}.csv"))
    return data.texts, np.array([CLASSES.index(label) for label in data.labels])  # type: ignore[union-attr]


def test_the_threshold_is_the_one_that_reaches_the_target_on_validation(tuned_folder: Path) -> None:
    rule = json.loads((tuned_folder / "decision.json").read_text())
    texts, gold = split("validation")
    probabilities = Predictor.from_folder(tuned_folder).class_probabilities(texts)
    # recall 1.0: the highest threshold that keeps every gold D/LT is their lowest D/LT probability
    assert rule["class_thresholds"]["D/LT"] == pytest.approx(probabilities[gold == 0, 0].min(), abs=1e-6)
    assert rule["tuning"][0]["data"].endswith("validation.csv")


def test_metrics_are_those_of_the_rule_in_force_beside_the_default_rule(tuned_folder: Path) -> None:
    threshold = json.loads((tuned_folder / "decision.json").read_text())["class_thresholds"]["D/LT"]
    metrics = json.loads((tuned_folder / "metrics.json").read_text())
    texts, gold = split("test")
    probabilities = Predictor.from_folder(tuned_folder).class_probabilities(texts)
    ruled, argmax = hand_predictions(probabilities, threshold), probabilities.argmax(axis=1)
    assert (ruled != argmax).any(), "the test data should have examples the threshold moves"
    assert reported(metrics["test"]["per_class"]) == per_class(gold, ruled)
    assert reported(metrics["default_rule"]["test"]["per_class"]) == per_class(gold, argmax)
    card = (tuned_folder / "README.md").read_text()
    assert "must-not-miss rule tuned then (`D/LT` recall >= 1.0" in card
    test_section = card.split("### Test", 1)[1].split("##", 1)[0]
    assert "With the default rule (most probable class) instead, on the same data" in test_section
    assert "### Validation (tuned here: optimistic)" in card and "### Test (" not in card


def test_eval_and_predict_apply_the_stored_rule(tuned_folder: Path) -> None:
    threshold = json.loads((tuned_folder / "decision.json").read_text())["class_thresholds"]["D/LT"]
    texts, gold = split("test")
    probabilities = Predictor.from_folder(tuned_folder).class_probabilities(texts)
    ruled = hand_predictions(probabilities, threshold)
    assert [p.label for p in api.predict(tuned_folder, texts)] == [CLASSES[i] for i in ruled]
    evaluation = api.evaluate(tuned_folder, REPO / "data" / "seriousness" / "test.csv", resamples=0)
    assert reported(evaluation.metrics["per_class"]) == per_class(gold, ruled)
    assert reported(evaluation.metrics["default_rule"]["per_class"]) == per_class(gold, probabilities.argmax(axis=1))


def test_an_unreachable_target_keeps_the_model_and_says_so(tuned_folder: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from clintune.workflows import evaluate as evaluate_module
    from clintune.workflows import train as train_module
    from clintune.workflows.prepare import prepare_data

    folder = tmp_path / "model"
    shutil.copytree(tuned_folder, folder)
    (folder / "decision.json").unlink()

    def unreachable(*args: object, **kwargs: object) -> None:
        raise ClintuneError("--tune-threshold Serious:recall=1.0: no threshold reaches recall 1.0 for 'Serious' on v.jsonl")

    monkeypatch.setattr(evaluate_module, "tuned_rule", unreachable)
    config = load_config(CONFIG, [f"output.dir={folder}", "decision.must_not_miss={Serious: 1.0}"])
    reason, _ = train_module._store_decision_rule(config, prepare_data(config), Predictor.from_folder(folder), folder)
    assert reason == "no threshold reaches recall 1.0 for 'Serious' on v.jsonl"
    assert not (folder / "decision.json").exists()
    metrics = json.loads((folder / "metrics.json").read_text()) | {"must_not_miss_unmet": reason}
    metrics.pop("default_rule")
    for split in ("validation", "test"):  # as training scores them when the target is unmet: by the default rule
        metrics[split]["decision_rule"] = "most probable class"
    (folder / "metrics.json").write_text(json.dumps(metrics))
    from clintune.evaluation.model_card import render_model_card

    assert "could not be met** (no threshold reaches recall 1.0" in render_model_card(folder)


# -- a group of nested classes ("serious or worse") -------------------------


def seriousness_encoder():  # noqa: ANN201
    from clintune.data.labels import LabelEncoder

    return LabelEncoder(tuple(CLASSES), "multiclass")


def test_a_group_threshold_judges_the_summed_probability_and_predicts_the_groups_more_probable_class() -> None:
    from clintune.modeling.decision import DecisionRule

    # columns: D/LT, Serious, Non-serious (CLASSES order)
    probabilities = np.array([
        [0.30, 0.25, 0.45],   # serious or worse 0.55 >= 0.5: the group wins; D/LT is its more probable class
        [0.10, 0.35, 0.55],   # 0.45: below, so the most probable class, Non-serious
        [0.05, 0.50, 0.45],   # 0.55: Serious
        [0.60, 0.10, 0.30],   # 0.70: D/LT
    ])
    rule = DecisionRule(class_thresholds={"D/LT+Serious": 0.5})
    assert [CLASSES[i] for i in rule.predict(probabilities, seriousness_encoder())] == ["D/LT", "Non-serious", "Serious", "D/LT"]
    assert "more probable of 'D/LT', 'Serious' when their summed probability >= 0.5" in rule.describe(seriousness_encoder())


def test_a_group_recall_target_takes_the_highest_sum_that_reaches_it() -> None:
    from clintune.evaluation.thresholds import tune_targets

    rng = np.random.default_rng(0)
    gold = rng.choice(3, size=400, p=[0.05, 0.15, 0.80])
    logits = rng.normal(size=(400, 3)) + np.eye(3)[gold] * 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    from clintune.modeling.decision import DecisionRule

    rule = tune_targets(DecisionRule(), probabilities, gold,
                        seriousness_encoder(), ["D/LT+Serious:recall=0.9"], "test")
    threshold = rule.class_thresholds["D/LT+Serious"]
    assert threshold < 0.5  # so below it Non-serious holds more than half: the group is predicted exactly when its sum reaches it
    # independently: the group's recall at a threshold is the share of gold D/LT or Serious whose summed probability reaches it
    in_group = gold != 2
    summed = probabilities[:, 0] + probabilities[:, 1]
    candidates = np.unique(summed)
    reaching = [t for t in candidates if np.mean(summed[in_group] >= t) >= 0.9]
    assert threshold == pytest.approx(max(reaching))
    assert rule.tuning[0]["achieved"] == pytest.approx(np.mean(summed[in_group] >= threshold))
    predicted = rule.predict(probabilities, seriousness_encoder())
    hand = np.where(summed >= threshold, np.where(probabilities[:, 0] >= probabilities[:, 1], 0, 1), probabilities.argmax(axis=1))
    assert (predicted == hand).all()


def test_a_group_must_name_known_classes() -> None:
    assert load_config(CONFIG, ["decision.must_not_miss={D/LT+Serious: 0.9}"]).decision.must_not_miss == {"D/LT+Serious": 0.9}
    with pytest.raises(ConfigError, match="'D/LT\\+Grave' not in labels.classes"):
        load_config(CONFIG, ["decision.must_not_miss={D/LT+Grave: 0.9}"])
    with pytest.raises(ConfigError, match="names a class twice"):
        load_config(CONFIG, ["decision.must_not_miss={D/LT+D/LT: 0.9}"])
    with pytest.raises(ConfigError, match="joins every class, so it would always be predicted"):
        load_config(CONFIG, ["decision.must_not_miss={D/LT+Serious+Non-serious: 0.9}"])
    with pytest.raises(ConfigError, match="a binary task has no groups of classes"):
        load_config(REPO / "configs" / "tiny" / "diagnosis.yaml", ["decision.must_not_miss={valid+invalid: 0.9}"])


def test_eval_reports_the_groups_recall_and_precision_under_both_rules() -> None:
    from clintune.console import format_rule_cost
    from clintune.data.examples import TextExamples
    from clintune.evaluation.scores import evaluate_texts, group_metrics
    from clintune.modeling.decision import DecisionRule

    encoder = seriousness_encoder()
    probabilities = np.array([[0.30, 0.25, 0.45], [0.10, 0.35, 0.55], [0.05, 0.50, 0.45], [0.60, 0.10, 0.30], [0.02, 0.08, 0.90]])
    data = TextExamples([f"t{i}" for i in range(5)], ["Serious", "D/LT", "Non-serious", "D/LT", "Non-serious"], list(range(5)), "x")
    tuned = evaluate_texts(data, probabilities, encoder, DecisionRule(class_thresholds={"D/LT+Serious": 0.5}), resamples=0)
    # by hand: the rule flags rows 0, 2, 3 (sums 0.55, 0.55, 0.70); gold serious-or-worse rows are 0, 1, 3
    assert tuned.metrics["per_group"]["D/LT+Serious"] == {"recall": 2 / 3, "precision": 2 / 3, "support": 3, "predicted": 3}
    default = evaluate_texts(data, probabilities, encoder, DecisionRule(), resamples=0)
    assert "per_group" not in default.metrics  # the most probable class names no group ...
    plain = group_metrics(default.gold_ids, default.predicted_ids, encoder, ["D/LT+Serious"])  # ... so it is asked for
    # by hand: the most probable class flags rows 2 (Serious, gold Non-serious) and 3 (D/LT, gold D/LT)
    assert plain["D/LT+Serious"] == {"recall": 1 / 3, "precision": 0.5, "support": 3, "predicted": 2}
    table = format_rule_cost(tuned.metrics, {**default.metrics, "per_group": plain})
    row = next(line for line in table.splitlines() if line.startswith("D/LT+Serious (group)"))
    assert row.split()[2:] == ["0.333", "->", "0.667", "0.500", "->", "0.667"]


def test_the_model_card_lists_a_group_beside_its_classes() -> None:
    from clintune.data.examples import TextExamples
    from clintune.evaluation.model_card import _per_class_table
    from clintune.evaluation.scores import evaluate_texts
    from clintune.modeling.decision import DecisionRule

    probabilities = np.array([[0.30, 0.25, 0.45], [0.10, 0.35, 0.55], [0.05, 0.50, 0.45], [0.60, 0.10, 0.30]])
    data = TextExamples([f"t{i}" for i in range(4)], ["Serious", "D/LT", "Non-serious", "Non-serious"], list(range(4)), "x")
    tuned = evaluate_texts(data, probabilities, seriousness_encoder(), DecisionRule(class_thresholds={"D/LT+Serious": 0.5}), resamples=0)
    table = _per_class_table(tuned.metrics["per_class"], tuned.metrics["per_group"]).splitlines()
    # by hand: rows 0, 2, 3 are flagged (sums 0.55, 0.55, 0.70); gold serious-or-worse are rows 0 and 1
    assert table[-1] == "| `D/LT+Serious` (group) | 0.333 | 0.500 | | 2 |"
    assert len(table) == 2 + 3 + 1


def test_a_malformed_eval_target_is_refused_before_any_prediction(trained_models: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """On a large file the user waited through every prediction to learn the target lacked a class name."""
    folder = tmp_path / "model"
    shutil.copytree(trained_models["section_header"], folder)
    monkeypatch.setattr(Predictor, "from_model_folder", lambda *a, **k: pytest.fail("the model was loaded first"))
    with pytest.raises(ClintuneError, match="name the class"):
        api.evaluate(folder, REPO / "data" / "section_header" / "test.csv", tune_thresholds=["recall=0.9"])
    assert not (folder / "decision.json").exists()


def test_a_label_the_rule_chose_says_so_with_the_probability_that_drove_it() -> None:
    from clintune.cli import _human_line
    from clintune.inference.sinks import result_record
    from clintune.modeling.tasks import SequenceClassification

    encoder = seriousness_encoder()
    rule = DecisionRule(class_thresholds={"D/LT+Serious": 0.1905})
    task = SequenceClassification()
    # the anaphylaxis note: Serious at 36.3% is shown, but what made it Serious is the group's 68%
    anaphylaxis = task.decode(np.array([0.317, 0.363, 0.320]), encoder, rule)
    assert anaphylaxis.label == "Serious"
    assert anaphylaxis.decided_by == {"rule": "D/LT+Serious >= 0.1905", "group": "D/LT+Serious",
                                      "group_probability": pytest.approx(0.68)}
    line = _human_line("text 1", result_record(anaphylaxis))
    assert "P(D/LT+Serious) = 0.680" in line and "D/LT+Serious >= 0.1905" in line
    # a label that is not the most probable class (Non-serious 0.428) never stands unexplained
    other = task.decode(np.array([0.152, 0.420, 0.428]), encoder, rule)
    assert other.label == "Serious" and other.decided_by["group_probability"] == pytest.approx(0.572)
    assert result_record(other)["decided_by"]["group"] == "D/LT+Serious"
    # below every threshold: the most probable class, and nothing to explain
    plain = task.decode(np.array([0.05, 0.10, 0.85]), encoder, rule)
    assert plain.label == "Non-serious" and plain.decided_by is None and "decided_by" not in result_record(plain)


def test_a_binary_threshold_explains_only_the_labels_it_changed() -> None:
    from clintune.data.labels import LabelEncoder

    encoder = LabelEncoder(classes=("invalid", "valid"), task_type="binary", positive="valid")
    rule = DecisionRule(threshold=0.3)
    ids, reasons = rule.decide(np.array([[0.6, 0.4], [0.2, 0.8], [0.8, 0.2]]), encoder)
    assert [encoder.classes[i] for i in ids] == ["valid", "valid", "invalid"]
    assert reasons[0] == {"rule": "valid >= 0.3", "group": "valid", "group_probability": pytest.approx(0.4)}
    assert reasons[1] is None and reasons[2] is None
