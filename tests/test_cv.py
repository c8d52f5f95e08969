"""``clintune cv``: stratified folds, out-of-fold predictions, summaries checked against scipy and scikit-learn,
thresholds tuned on the pooled predictions, and a killed run resumed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, recall_score

from clintune import api
from clintune.config.loading import load_config
from clintune.data.examples import TextExamples
from clintune.errors import ClintuneError
from clintune.workflows import cv as cv_module

CONFIG = REPO / "configs" / "tiny" / "diagnosis.yaml"


def diagnosis(tmp: Path, *overrides: str):
    return load_config(CONFIG, [f"output.dir={tmp / 'model'}", "training.epochs=1", *overrides])


def test_folds_are_stratified_and_cover_every_example_once() -> None:
    labels = ["a"] * 23 + ["b"] * 10 + ["c"] * 5
    data = TextExamples([f"t{i}" for i in range(len(labels))], labels, list(range(len(labels))), "x.csv")
    assignment = cv_module.fold_assignment(data, 5, seed=0)
    assert sorted(Counter(assignment).values()) == [7, 7, 8, 8, 8]
    for label in "abc":
        per_fold = Counter(int(f) for f, gold in zip(assignment, labels) if gold == label)
        assert max(per_fold.values()) - min(per_fold.values()) <= 1 and len(per_fold) == 5, (label, per_fold)


def test_the_folds_split_the_whole_training_file_with_or_without_a_validation_file(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A config that carves its validation share from train (data.validation: null, as a search config does)
    must not lose that share from the folds: both configs fold the same rows, in file order."""
    import csv

    folded: list[list[str]] = []

    def captured(data, folds, seed):  # noqa: ANN001, ANN202
        folded.append(list(data.texts))
        raise KeyboardInterrupt  # no fold needs to train

    monkeypatch.setattr(cv_module, "fold_assignment", captured)
    for overrides in ([], ["data.validation=null"]):
        with pytest.raises(KeyboardInterrupt):
            api.cross_validate(diagnosis(tmp_path, *overrides), 3, output=tmp_path / f"cv{len(folded)}")
    config = diagnosis(tmp_path)
    with open(config.data.train, newline="") as handle:
        rows = [row[config.data.text_column] for row in csv.DictReader(handle)]
    assert folded[0] == folded[1] and len(folded[1]) == len(rows)


def test_groups_stay_in_one_fold() -> None:
    labels = (["a"] * 6 + ["b"] * 3) * 4
    groups = [f"patient-{i // 3}" for i in range(len(labels))]  # 12 patients, 3 notes each
    data = TextExamples([f"t{i}" for i in range(len(labels))], labels, list(range(len(labels))), "x.csv", groups=groups)
    assignment = cv_module.fold_assignment(data, 4, seed=0)
    for patient in set(groups):
        assert len({int(f) for f, g in zip(assignment, groups) if g == patient}) == 1, patient
    assert len(set(assignment.tolist())) == 4
    with pytest.raises(ClintuneError, match="only 12 groups"):
        cv_module.fold_assignment(data, 13, seed=0)


def test_a_class_with_one_example_is_refused_and_a_rare_class_is_held_out_in_fewer_folds(caplog) -> None:  # noqa: ANN001
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 2
    data = TextExamples([f"t{i}" for i in range(len(labels))], labels, list(range(len(labels))), "x.csv")
    assignment = cv_module.fold_assignment(data, 5, seed=0)
    folds_with_c = {int(f) for f, gold in zip(assignment, labels) if gold == "c"}
    assert len(folds_with_c) == 2  # held out twice, so every fold's training part keeps at least one
    assert "'c' (2) have fewer examples than folds" in caplog.text
    single = TextExamples(data.texts + ["t32"], labels + ["d"], list(range(33)), "x.csv")
    with pytest.raises(ClintuneError, match="class 'd' has only 1 example in x.csv; a class needs at least 2"):
        cv_module.fold_assignment(single, 2, seed=0)


def test_per_class_spread_uses_only_the_folds_that_held_the_class_out() -> None:
    row = {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    folds = [{"f1": 0.5, "per_class": {"a": {**row, "support": 3}, "c": {**row, "f1": 0.6, "support": 1}}},
             {"f1": 0.7, "per_class": {"a": {**row, "f1": 0.8, "support": 3}, "c": {**row, "f1": 0.0, "support": 0}}},
             {"f1": 0.6, "per_class": {"a": {**row, "f1": 0.9, "support": 2}, "c": {**row, "f1": 0.4, "support": 1}}}]
    summary = cv_module.summarise(folds, n_test=10, n_train=20)
    assert summary["per_class"]["c"]["folds"] == 2
    assert summary["per_class"]["c"]["f1"]["mean"] == pytest.approx(0.5)
    assert summary["per_class"]["c"]["f1"]["std"] == pytest.approx(np.std([0.6, 0.4], ddof=1))
    assert summary["per_class"]["a"]["folds"] == 3


@pytest.mark.parametrize(("folds", "message"), [
    (1, "needs at least 2 folds"),
    (300, "has only 160 examples"),
])
def test_impossible_fold_counts_are_refused_before_anything_is_written(tmp_path: Path, folds: int, message: str) -> None:
    with pytest.raises(ClintuneError, match=message):
        api.cross_validate(diagnosis(tmp_path), folds, output=tmp_path / "cv")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 3-fold run killed during its second fold, then resumed with --resume; what each step saw."""
    tmp = tmp_path_factory.mktemp("cv")
    config, out = diagnosis(tmp), tmp / "cv"
    trained: list[str] = []
    real_train = cv_module.train

    def killed_on_the_second_fold(fold_config, overwrite=False, **kwargs):  # noqa: ANN001, ANN202
        trained.append(fold_config.output.dir)
        if len(trained) == 2:
            raise KeyboardInterrupt
        return real_train(fold_config, overwrite=overwrite, **kwargs)

    cv_module.train = killed_on_the_second_fold
    try:
        with pytest.raises(KeyboardInterrupt):
            api.cross_validate(config, 3, output=out)
    finally:
        cv_module.train = real_train
    work = out.with_name(".cv.partial")
    first_fold = json.loads((work / "folds" / "fold-1" / "result.json").read_text())
    with pytest.raises(ClintuneError, match="pass --resume to continue it"):
        api.cross_validate(config, 3, output=out)
    with pytest.raises(ClintuneError, match="used other settings or data"):
        api.cross_validate(config, 4, output=out, resume=True)
    resumed: list[str] = []

    def counting(fold_config, overwrite=False, **kwargs):  # noqa: ANN001, ANN202
        resumed.append(fold_config.output.dir)
        return real_train(fold_config, overwrite=overwrite, **kwargs)

    cv_module.train = counting
    try:
        report = api.cross_validate(config, 3, output=out, resume=True, tune_thresholds=["valid:recall=0.9"], train_final=True).report
    finally:
        cv_module.train = real_train
    records = [json.loads(line) for line in (out / "oof_predictions.jsonl").read_text().splitlines()]
    return {"out": out, "report": report, "records": records, "first_fold": first_fold, "resumed": resumed, "work": work,
            "final": Path(config.output.dir)}


def test_a_resumed_run_trains_only_the_unfinished_folds(finished: dict) -> None:
    assert [Path(d).parent.name for d in finished["resumed"]] == ["fold-2", "fold-3", finished["final"].parent.name]
    first = finished["report"]["folds"][0]
    assert first["accuracy"] == finished["first_fold"]["metrics"]["accuracy"]
    assert not finished["work"].exists()
    assert sorted(p.name for p in finished["out"].iterdir()) == ["cv.json", "decision.json", "oof_predictions.jsonl"]


def test_every_training_example_is_predicted_once_by_the_fold_that_did_not_see_it(finished: dict) -> None:
    records = finished["records"]
    rows = [r["row"] for r in records]
    assert len(rows) == len(set(rows)) == 160  # data/diagnosis/train.csv
    report = finished["report"]
    for fold in report["folds"]:
        mine = [r for r in records if r["fold"] == fold["fold"]]
        assert len(mine) == fold["examples"]
        # the fold's own metrics are the held-out rows' (default rule, as the fold model predicts them)
        default = ["valid" if r["probabilities"]["valid"] >= 0.5 else "invalid" for r in mine]
        assert fold["accuracy"] == pytest.approx(accuracy_score([r["gold"] for r in mine], default))


def test_summary_is_mean_sd_and_the_corrected_interval_across_folds(finished: dict) -> None:
    report = finished["report"]
    values = [fold["accuracy"] for fold in report["folds"]]
    summary = report["summary"]["accuracy"]
    # the corrected resampled t interval (Nadeau & Bengio): sem widened by sqrt(1 + k n_test / n_train)
    k, n_test = len(values), np.mean([fold["examples"] for fold in report["folds"]])
    scale = stats.sem(values) * np.sqrt(1 + k * n_test / (160 - n_test))
    low, high = stats.t.interval(0.95, k - 1, loc=np.mean(values), scale=scale)
    assert report["interval"].startswith("95% corrected resampled t") and report["fold_sizes"]["n_test"] == n_test
    assert summary["mean"] == pytest.approx(np.mean(values))
    assert summary["std"] == pytest.approx(np.std(values, ddof=1))
    assert (summary["low"], summary["high"]) == pytest.approx((max(low, 0.0), min(high, 1.0)))
    f1_valid = [fold["per_class"]["valid"]["f1"] for fold in report["folds"]]
    assert report["summary"]["per_class"]["valid"]["f1"]["mean"] == pytest.approx(np.mean(f1_valid))


def test_pooled_metrics_and_the_threshold_are_those_of_the_out_of_fold_predictions(finished: dict) -> None:
    records, report = finished["records"], finished["report"]
    gold = [r["gold"] for r in records]
    predicted = [r["predicted"] for r in records]
    assert report["pooled"]["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert report["pooled"]["f1"] == pytest.approx(f1_score(gold, predicted, pos_label="valid"))
    threshold = json.loads((finished["out"] / "decision.json").read_text())["threshold"]
    assert predicted == ["valid" if r["probabilities"]["valid"] >= threshold else "invalid" for r in records]
    assert recall_score(gold, predicted, pos_label="valid") >= 0.9
    scores = sorted({r["probabilities"]["valid"] for r in records if r["probabilities"]["valid"] > threshold})
    if scores:  # the next threshold up misses the target: the highest that reaches it was taken
        higher = ["valid" if r["probabilities"]["valid"] >= scores[0] else "invalid" for r in records]
        assert recall_score(gold, higher, pos_label="valid") < 0.9


def test_the_final_model_carries_the_out_of_fold_rule(finished: dict) -> None:
    assert json.loads((finished["final"] / "decision.json").read_text()) == json.loads((finished["out"] / "decision.json").read_text())
    assert "out-of-fold predictions (3 folds" in (finished["final"] / "README.md").read_text()
    # the figures beside that rule are the pooled out-of-fold ones it was tuned on, not the final training's
    metrics = json.loads((finished["final"] / "metrics.json").read_text())
    check = metrics["rule_check"]
    assert check["rule"] == finished["report"]["decision"]["rule"] and check["tuned_here"] is True
    assert check["metrics"]["f1"] == finished["report"]["pooled"]["f1"]
    assert check["default_rule"]["f1"] == finished["report"]["pooled_default_rule"]["f1"]
    card = (finished["final"] / "README.md").read_text()
    assert "### On `out-of-fold predictions of" in card and "(tuned here: optimistic)" in card


def test_train_final_refuses_an_occupied_output_dir_before_any_fold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("mine\n")
    monkeypatch.setattr(cv_module, "train", lambda *a, **k: pytest.fail("no fold may train"))
    with pytest.raises(ClintuneError, match="notes.txt"):
        api.cross_validate(diagnosis(tmp_path), 3, output=tmp_path / "cv", train_final=True, overwrite=True)
    assert (tmp_path / "model" / "notes.txt").read_text() == "mine\n"


def test_the_corrected_interval_matches_a_hand_worked_example() -> None:
    from clintune.evaluation.metrics import corrected_t_interval

    # five folds of 20 held out, 80 trained on: mean 0.83; sample variance (0.03^2 + 0.02^2 + 0.05^2 + 0.07^2
    # + 0.01^2) / 4 = 0.0022; widened by 1/5 + 20/80 = 0.45 to 0.00099; t(0.975, 4) = 2.7764451051977987
    half = 2.7764451051977987 * 0.00099 ** 0.5
    mean, low, high = corrected_t_interval([0.80, 0.85, 0.78, 0.90, 0.82], n_test=20, n_train=80)
    assert (mean, low, high) == pytest.approx((0.83, 0.83 - half, 0.83 + half))


@pytest.mark.parametrize("k", [5, 10])
def test_the_corrected_interval_covers_where_the_plain_one_does_not(k: int) -> None:
    """A fixed generating process: two classes N(-m, I) and N(+m, I) in 100 dimensions (|2m| = 1.2), 60 examples,
    a nearest-centroid classifier (unstable across training sets, as fine-tuning is). The value both intervals
    claim to hold is the expected error of a model trained on n_train examples (Nadeau & Bengio's target):
    the mean, over 20,000 independent training sets, of each model's error on 100,000 fresh draws. Of 2,000
    k-fold cross-validations, the plain t interval over the fold errors holds it under 90% of the time, the
    corrected one at least 93%."""
    from clintune.evaluation.metrics import corrected_t_interval

    rng = np.random.default_rng(0)
    n, d, signal = 60, 100, 1.2
    m = np.zeros(d)
    m[0] = signal / 2
    z = np.sort(rng.normal(0, 1, 100_000))  # fresh draws: w.x for x ~ N(mu, I) is w.mu + |w| z

    def fresh_error(w: np.ndarray, b: float) -> float:
        norm = np.linalg.norm(w)
        above = 1 - np.searchsorted(z, (b - w @ -m) / norm) / len(z)  # class 0 predicted 1
        below = np.searchsorted(z, (b - w @ m) / norm) / len(z)  # class 1 predicted 0
        return float(above + below) / 2

    def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        c0, c1 = x[y == 0].mean(0), x[y == 1].mean(0)
        return c1 - c0, float(c1 @ c1 - c0 @ c0) / 2

    def draw(size: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(size) % 2)
        return rng.normal(0, 1, (size, d)) + np.where(y[:, None] == 1, m, -m), y

    n_test = n // k
    n_train = n - n_test
    truth = np.mean([fresh_error(*fit(*draw(n_train))) for _ in range(20_000)])
    plain = corrected = 0
    repetitions = 2_000
    for _ in range(repetitions):
        x, y = draw(n)
        folds = rng.permutation(np.arange(n) % k)
        errors = []
        for fold in range(k):
            w, b = fit(x[folds != fold], y[folds != fold])
            errors.append(float(((x[folds == fold] @ w > b) != y[folds == fold]).mean()))
        half = stats.t.ppf(0.975, k - 1) * np.std(errors, ddof=1) / np.sqrt(k)  # the plain t interval, by hand
        plain += abs(np.mean(errors) - truth) <= half
        _, low, high = corrected_t_interval(errors, n_test, n_train)
        corrected += low <= truth <= high
    print(f"k={k}: plain covers {plain / repetitions:.3f}, corrected {corrected / repetitions:.3f}")
    assert plain / repetitions < 0.90
    assert corrected / repetitions >= 0.93
