"""Decision rules, calibration, bootstrap intervals, NER error kinds and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from clintune.data.labels import LabelEncoder
from clintune.errors import ClintuneError
from clintune.evaluation.metrics import bootstrap_intervals, calibration_bins, classification_statistic
from clintune.evaluation.scores import entity_errors
from clintune.evaluation.thresholds import fit_temperature, parse_target, tune
from clintune.modeling.decision import DecisionRule

BINARY = LabelEncoder(("invalid", "valid"), "binary", positive="valid")
SERIOUSNESS = LabelEncoder(("D/LT", "Serious", "Non-serious"), "multiclass")


def test_entity_errors_tell_boundary_from_type() -> None:
    tokens = "the BRCA1 breast cancer gene and ovarian cancer risk in Ashkenazi Jews".split()
    gold = {("Disease", 2, 3), ("Disease", 6, 7), ("Disease", 0, 0)}
    predicted = {
        ("Disease", 3, 3),        # right type, wrong extent -> boundary
        ("Gene", 6, 7),           # same span, wrong type   -> type
        ("Disease", 10, 11),      # nothing there           -> false positive
    }
    errors = entity_errors(tokens, gold, predicted)
    kinds = {e["kind"]: e for e in errors}
    assert sorted(kinds) == ["boundary", "false_positive", "missed", "type"]
    assert kinds["boundary"]["gold"]["text"] == "breast cancer" and kinds["boundary"]["predicted"]["text"] == "cancer"
    assert kinds["type"]["predicted"]["type"] == "Gene"
    assert kinds["missed"]["gold"]["text"] == "the"
    assert kinds["false_positive"]["predicted"]["text"] == "Ashkenazi Jews"
    assert all(e["sentence"] == " ".join(tokens) for e in errors)
    assert entity_errors(tokens, gold, gold) == []


def test_recall_target_is_met_on_the_tuning_data() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 300)
    scores = np.clip(gold * 0.3 + rng.random(300) * 0.7, 0, 1)
    probabilities = np.stack([1 - scores, scores], axis=1)
    rule = tune(DecisionRule(), probabilities, gold, BINARY, "recall=0.95", "val.csv")
    predicted = rule.predict(probabilities, BINARY)
    recall = np.sum((predicted == 1) & (gold == 1)) / np.sum(gold == 1)
    assert recall >= 0.95
    looser = DecisionRule(threshold=rule.threshold + 1e-9)
    tighter_recall = np.sum((looser.predict(probabilities, BINARY) == 1) & (gold == 1)) / np.sum(gold == 1)
    assert tighter_recall < 0.95, "the chosen threshold should be the highest one that meets the target"
    assert rule.tuning[0]["achieved"] == pytest.approx(recall)


def test_precision_target() -> None:
    gold = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.65])
    rule = tune(DecisionRule(), np.stack([1 - scores, scores], 1), gold, BINARY, "precision=0.75", "v")
    assert rule.threshold == pytest.approx(0.4)  # 4 of the 5 scores >= 0.4 are positive; at 0.3 only 4 of 6


def test_binary_thresholds_match_a_search_over_every_distinct_score() -> None:
    """Recall: the highest score whose ">= score" rule reaches the target; precision: the lowest. Ties included."""
    rng = np.random.default_rng(0)
    for case in range(300):
        n = int(rng.integers(2, 30))
        scores = np.round(rng.random(n), int(rng.integers(1, 3)))
        gold = (rng.random(n) < rng.random()).astype(int)
        metric, value = str(rng.choice(["recall", "precision"])), float(np.round(rng.uniform(0.05, 1.0), 2))
        expected = None
        for threshold in sorted(set(scores.tolist()), reverse=metric == "recall"):
            hits = sum(1 for s, g in zip(scores, gold) if s >= threshold and g == 1)
            denominator = int(gold.sum()) if metric == "recall" else sum(1 for s in scores if s >= threshold)
            achieved = hits / denominator if denominator else 0.0
            if achieved >= value:
                expected = (threshold, achieved)
                break
        probabilities = np.stack([1 - scores, scores], 1)
        if expected is None:
            with pytest.raises(ClintuneError, match="no threshold reaches"):
                tune(DecisionRule(), probabilities, gold, BINARY, f"{metric}={value}", "v")
            continue
        rule = tune(DecisionRule(), probabilities, gold, BINARY, f"{metric}={value}", "v")
        assert (rule.threshold, rule.tuning[0]["achieved"]) == expected, (case, scores, gold, metric, value)


def test_must_not_miss_class_in_multiclass() -> None:
    probabilities = np.array([[0.30, 0.60, 0.10], [0.20, 0.70, 0.10], [0.50, 0.40, 0.10], [0.05, 0.15, 0.80]])
    gold = np.array([0, 1, 0, 2])
    assert DecisionRule().predict(probabilities, SERIOUSNESS).tolist() == [1, 1, 0, 2]
    rule = tune(DecisionRule(), probabilities, gold, SERIOUSNESS, "D/LT:recall=1.0", "v")
    assert rule.class_thresholds == {"D/LT": pytest.approx(0.30)}
    assert rule.predict(probabilities, SERIOUSNESS).tolist() == [0, 1, 0, 2]


def test_target_parsing_errors() -> None:
    assert parse_target("recall=0.95", BINARY) == ("valid", "recall", 0.95)
    for bad, encoder in [("recall=1.5", BINARY), ("f1=0.9", BINARY), ("recall=0.9", SERIOUSNESS), ("Fatal:recall=0.9", SERIOUSNESS)]:
        with pytest.raises(ClintuneError):
            parse_target(bad, encoder)


def test_unreachable_target_is_an_error() -> None:
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2]])
    with pytest.raises(ClintuneError, match="no threshold reaches precision"):
        tune(DecisionRule(), probabilities, np.array([0, 0]), BINARY, "precision=0.9", "v")


def test_ece_by_hand() -> None:
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    gold = np.array([0, 1, 0, 0])
    calibration = calibration_bins(probabilities, gold, n_bins=10)
    # bin 0.8-0.9: confidence 0.9, accuracy 0.5; bin 0.5-0.6: confidence 0.6, accuracy 1.0
    assert calibration["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert sum(b["count"] for b in calibration["bins"]) == 4


def test_temperature_reduces_overconfidence() -> None:
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), gold] += 1.0
    logits *= 4  # overconfident
    temperature = fit_temperature(logits, gold)
    assert temperature > 2

    def nll(t: float) -> float:
        return float(-np.log(special.softmax(logits / t, axis=-1)[np.arange(400), gold]).mean())

    assert nll(temperature) < nll(1.0)
    assert nll(temperature) <= nll(temperature * 1.2) and nll(temperature) <= nll(temperature / 1.2)


def test_bootstrap_intervals_match_scipy_percentile_bootstrap() -> None:
    """Our 95% percentile intervals against scipy.stats.bootstrap's, each with its own random resamples:
    they agree to Monte-Carlo noise (< 0.006 here), while a 90% interval would be ~0.01 off."""
    from scipy import stats
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, 200)
    predicted = np.where(rng.random(200) < 0.8, gold, 1 - gold)
    intervals = bootstrap_intervals(classification_statistic(gold, predicted, positive_id=1), 200, resamples=2000, seed=3)
    reference = {
        "accuracy": stats.bootstrap(((gold == predicted).astype(float),), np.mean, method="percentile",
                                    n_resamples=2000, random_state=0).confidence_interval,
        "f1": stats.bootstrap((gold, predicted), f1_score, paired=True, vectorized=False, method="percentile",
                              n_resamples=2000, random_state=0).confidence_interval,
    }
    for key, expected in reference.items():
        assert intervals[key]["low"] == pytest.approx(expected.low, abs=0.006), key
        assert intervals[key]["high"] == pytest.approx(expected.high, abs=0.006), key
    assert bootstrap_intervals(classification_statistic(gold, predicted, 1), 200, resamples=2000, seed=3) == intervals


def test_figures_are_labelled_pngs(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from clintune.evaluation import plots

    gold = np.array([0, 1, 1, 0, 1])
    scores = np.array([0.2, 0.8, 0.4, 0.3, 0.9])
    figures = {
        "cm": plots.confusion_matrix_figure(gold, (scores > 0.5).astype(int), ("invalid", "valid"), "t"),
        "roc": plots.roc_figure(gold, scores, 0.5, "valid"),
        "pr": plots.precision_recall_figure(gold, scores, 0.5, "valid"),
        "rel": plots.reliability_figure(calibration_bins(np.stack([1 - scores, scores], 1), gold)),
    }
    for name, figure in figures.items():
        plotted = [axes for axes in figure.axes if axes.get_label() != "<colorbar>"]
        assert plotted[0].get_title() and plotted[-1].get_xlabel() and all(axes.get_ylabel() for axes in plotted)
        path = tmp_path / f"{name}.png"
        plots.save(figure, path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width = imread(path).shape[:2]
        assert height > 300 and width > 300
    tick_labels = [t.get_text() for t in figures["cm"].axes[0].get_xticklabels()]
    assert tick_labels == ["invalid", "valid"]


def _highest_threshold_reaching_recall(scores: np.ndarray, positive: np.ndarray, target: float) -> tuple[float, float]:
    """By hand: walk the scores from the top; the first whose recall reaches the target, and that recall."""
    for candidate in sorted(set(scores.tolist()), reverse=True):
        recall = float(np.sum((scores >= candidate) & positive) / np.sum(positive))
        if recall >= target:
            return candidate, recall
    raise AssertionError("unreachable target")


def test_refitting_the_temperature_retunes_the_threshold_in_force(trained_models: dict[str, Path], tmp_path: Path) -> None:
    import json
    import shutil

    from clintune.api import evaluate

    folder = tmp_path / "diagnosis"
    shutil.copytree(trained_models["diagnosis"], folder)
    data = "data/diagnosis/validation.csv"
    before = evaluate(folder, data, tune_thresholds=["recall=0.9"], resamples=0)
    old = json.loads((folder / "decision.json").read_text())
    after = evaluate(folder, data, fit_temperature=True, resamples=0)
    rule = json.loads((folder / "decision.json").read_text())
    assert rule["temperature"] != pytest.approx(1.0)
    valid = BINARY.positive_id
    scores, positive = after.probabilities[:, valid], after.gold_ids == valid
    threshold, recall = _highest_threshold_reaching_recall(scores, positive, 0.9)
    assert rule["threshold"] == pytest.approx(threshold) and rule["threshold"] != pytest.approx(old["threshold"])
    assert rule["tuning"] == [old["tuning"][0] | {"threshold": rule["threshold"], "achieved": recall}]
    assert after.predicted_ids.tolist() == before.predicted_ids.tolist(), "the same cut through the same ranking"
    card = (folder / "README.md").read_text()
    assert f"threshold {rule['threshold']:.4g} chosen for recall>=0.9" in card
    assert "`transformers.pipeline` does not read `decision.json`" in card


def test_refitting_the_temperature_drops_a_threshold_without_a_target(trained_models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from clintune.api import evaluate

    folder = tmp_path / "seriousness"
    shutil.copytree(trained_models["seriousness"], folder)
    DecisionRule(class_thresholds={"D/LT": 0.3}).save(folder)  # set by hand: no recorded target
    evaluate(folder, "data/seriousness/validation.csv", fit_temperature=True, resamples=0)
    rule = DecisionRule.load(folder)
    assert rule.class_thresholds == {} and rule.temperature != pytest.approx(1.0)


def test_ner_tag_sets_come_from_entity_types() -> None:
    from clintune.data.labels import LabelEncoder, with_both_bio_tags

    # every Drug mention was one word: B-Drug only, yet I-Drug is a tag of the model
    encoder = LabelEncoder.fit(["O", "B-Drug", "B-Disease", "I-Disease", "O"], "ner")
    assert encoder.classes == ("B-Disease", "B-Drug", "I-Disease", "I-Drug", "O")
    assert with_both_bio_tags(["O", "B-X"]) == ["O", "B-X", "I-X"]


def test_eval_accepts_i_x_where_an_older_folder_knows_only_b_x(trained_models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from clintune import api
    from clintune.errors import DataError

    folder = tmp_path / "older"
    shutil.copytree(trained_models["ner"], folder)
    labels = json.loads((folder / "labels.json").read_text())
    assert sorted(labels["classes"]) == ["B-Disease", "I-Disease", "O"]
    # a folder of the old kind: no I- tag for either type (the head's I-Disease output now reads B-Drug)
    labels["classes"] = ["B-Drug" if tag == "I-Disease" else tag for tag in labels["classes"]]
    (folder / "labels.json").write_text(json.dumps(labels))
    hf = json.loads((folder / "config.json").read_text())
    hf["id2label"] = {str(i): tag for i, tag in enumerate(labels["classes"])}
    hf["label2id"] = {tag: i for i, tag in enumerate(labels["classes"])}
    (folder / "config.json").write_text(json.dumps(hf))
    data = tmp_path / "two-words.conll"
    data.write_text("Aspirin\tB-Drug\nsodium\tI-Drug\nfor\tO\ncystic\tB-Disease\nfibrosis\tI-Disease\n.\tO\n")
    evaluation = api.evaluate(folder, data, resamples=0)
    assert evaluation.metrics["n_entities"] == 2 and "I-Drug" in evaluation.classes
    unknown = tmp_path / "unknown.conll"
    unknown.write_text("Aspirin\tB-Chemical\n.\tO\n")
    with pytest.raises(DataError, match="never saw: 'B-Chemical'"):
        api.evaluate(folder, unknown, resamples=0)


def test_the_readmes_metrics_keys_are_those_eval_writes(trained_models: dict[str, Path]) -> None:
    import re

    from conftest import REPO

    from clintune import api

    text = (REPO / "docs" / "reference" / "metrics.md").read_text(encoding="utf-8").split("<!-- metrics-keys -->", 1)[1].split(".\n", 1)[0]
    listed = {kind: re.findall(r"`(\w+)`", keys) for kind, keys in re.findall(r"(binary|multiclass|multilabel|ner): ([^;]+)", text)}
    assert set(listed) == {"binary", "multiclass", "multilabel", "ner"}
    data = {"binary": ("diagnosis", "data/diagnosis/test.csv"), "multiclass": ("section_header", "data/section_header/test.csv"),
            "multilabel": ("symptoms", "data/symptoms/test.csv"), "ner": ("ner", "data/ner/test.conll")}
    for kind, (task, path) in data.items():
        metrics = api.evaluate(trained_models[task], REPO / path, resamples=0).metrics
        missing = [key for key in listed[kind] if key not in metrics]
        assert not missing, f"the metrics reference lists {missing} for {kind}, which its metrics.json lacks"
        assert "per_class" in metrics
        others = {key for other, keys in listed.items() if other != kind for key in keys} - set(listed[kind])
        assert not others & set(metrics), f"{kind} writes {others & set(metrics)}, listed only for another kind"
