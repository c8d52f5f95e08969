"""Multi-label coding (task.type: multilabel): reading label sets, per-label thresholds, metrics, loss, and
the verbs end to end on configs/tiny/symptoms.yaml. Thresholds are checked against a brute-force search,
metrics against scikit-learn and hand-worked examples, the loss against its formula in numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli, write

from clintune.config.loading import load_config
from clintune.errors import ClintuneError, ConfigError

CONFIG = REPO / "configs" / "tiny" / "symptoms.yaml"


def _config(tmp_path: Path, train: Path, *overrides: str):
    return load_config(CONFIG, [f"data.train={train}", "data.validation=null", "data.test=null",
                                f"output.dir={tmp_path / 'out'}", *overrides])


def _read(tmp_path: Path, name: str, content: str | bytes, *overrides: str):
    from clintune.data.readers import read_split

    path = write(tmp_path / name, content) if isinstance(content, str) else _write_bytes(tmp_path / name, content)
    return read_split(_config(tmp_path, path, *overrides), str(path))


def _write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# -- reading ------------------------------------------------------------------------------------------


def test_label_sets_from_a_joined_column_a_json_list_and_wide_flags(tmp_path: Path) -> None:
    joined = _read(tmp_path, "a.csv", "ID,Symptoms,Narrative\n1,Rash; Pyrexia,fever and rash\n2,,nothing\n3,Pyrexia,hot\n")
    assert joined.labels == [["Rash", "Pyrexia"], [], ["Pyrexia"]]
    assert joined.rows == [2, 3, 4]
    mixed = _read(tmp_path, "b.jsonl", '{"Narrative": "a", "Symptoms": ["Rash", "Pyrexia"]}\n'
                                       '{"Narrative": "b", "Symptoms": "Rash;Pyrexia"}\n{"Narrative": "c", "Symptoms": []}\n')
    assert mixed.labels == [["Rash", "Pyrexia"], ["Rash", "Pyrexia"], []]
    wide = _read(tmp_path, "c.csv", "Narrative,Rash,Pyrexia\na,1,0\nb,0,0\nc,true,1\n", "data.label_columns=[Rash, Pyrexia]")
    assert wide.labels == [["Rash"], [], ["Rash", "Pyrexia"]]


def test_label_sets_from_a_parquet_list_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"Narrative": ["a", "b"], "Symptoms": [["Rash"], []]}), path)
    from clintune.data.readers import read_split

    assert read_split(_config(tmp_path, path), str(path)).labels == [["Rash"], []]


@pytest.mark.parametrize(("name", "content", "overrides", "expected"), [
    ("n.jsonl", '{"Narrative": "a", "Symptoms": ["Rash"]}\n{"Narrative": "b", "Symptoms": 7}\n', (),
     "a cell is neither text nor a list (int) (line 2)"),
    ("l.jsonl", '{"Narrative": "a", "Symptoms": ["Rash", 3]}\n', (), "a list holds something other than label texts (line 1)"),
    ("d.csv", "Narrative,Symptoms\na,Rash;Rash\nb,Rash\n", (), "a cell names a label twice (row 2)"),
    ("f.csv", "Narrative,Symptoms\na,1\nb,0\n", (), "holds only 0 and 1, flags rather than labels"),
    ("w.csv", "Narrative,Rash,Pyrexia\na,1,2\n", ("data.label_columns=[Rash, Pyrexia]",), "column 'Pyrexia' holds values other than 0"),
])
def test_bad_label_cells_are_named_by_row_and_column(tmp_path: Path, name: str, content: str, overrides: tuple[str, ...],
                                                     expected: str) -> None:
    from clintune.errors import DataError

    with pytest.raises(DataError) as raised:
        _read(tmp_path, name, content, *overrides)
    assert expected in str(raised.value)
    assert "fix:" in str(raised.value)


def test_config_refuses_what_multilabel_cannot_take() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(CONFIG, ["labels.classes=[Rash, Pyrexia, Cough]", "decision.must_not_miss={Pyrexia+Rash: 0.9}"])
    assert "labels are independent" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        load_config(CONFIG, ["labels.classes=['Rash; generalised', Pyrexia]"])
    assert "data.label_separator: ';' is part of the label name(s) 'Rash; generalised'" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        load_config(REPO / "configs/tiny/section_header.yaml", ["data.label_columns=[a, b]"])
    assert "set task.type: multilabel" in str(raised.value)


def test_unknown_labels_are_named_or_dropped_and_counted(tmp_path: Path) -> None:
    from clintune.workflows.prepare import prepare_data

    train = write(tmp_path / "t.csv", "Narrative,Symptoms\n" + "".join(f"n{i},{'Rash' if i % 2 else 'Pyrexia'}\n" for i in range(20))
                  + "x,Rahs;Rash\n")
    config = _config(tmp_path, train, "labels.classes=[Rash, Pyrexia]")
    with pytest.raises(ClintuneError) as raised:
        prepare_data(config)
    assert "1 label(s) not in labels.classes: 'Rahs' (row 22); did you mean 'Rash' for 'Rahs'?" in str(raised.value)
    prepared = prepare_data(_config(tmp_path, train, "labels.classes=[Rash, Pyrexia]", "labels.unknown=ignore"))
    assert any("dropped 1 label(s) not in labels.classes from 1 note(s)" in note for note in prepared.notes)
    assert ["Rahs"] not in (prepared.train.labels or []) and all("Rahs" not in labels for labels in prepared.train.labels or [])
    with pytest.raises(ClintuneError, match="listed label\\(s\\) have no training example: 'Cough'"):
        prepare_data(_config(tmp_path, train, "labels.classes=[Rash, Pyrexia, Cough]", "labels.unknown=ignore"))


# -- thresholds ---------------------------------------------------------------------------------------


def _brute_force_f1_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    best = (-1.0, -1.0)
    for threshold in sorted(set(scores.tolist())):
        predicted = scores >= threshold
        tp, fp, fn = np.sum(predicted & positive), np.sum(predicted & ~positive), np.sum(~predicted & positive)
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 >= best[1]:  # ties: the higher threshold
            best = (threshold, f1)
    return best


def test_thresholds_match_a_brute_force_search() -> None:
    from clintune.modeling.multilabel import MIN_POSITIVES_TO_TUNE, tune_thresholds

    rng = np.random.default_rng(7)
    n, classes = 300, ["a", "b", "c", "rare"]
    gold = (rng.random((n, 4)) < [0.3, 0.5, 0.1, 0.02]).astype(int)
    gold[:, 3] = 0
    gold[: MIN_POSITIVES_TO_TUNE - 1, 3] = 1  # one positive too few to tune on
    scores = np.clip(gold * 0.25 + rng.random((n, 4)) * 0.75, 0, 1).round(3)  # rounded: ties between notes
    thresholds, records = tune_thresholds(scores, gold, classes, {"b": 0.9})
    for j, label in enumerate(classes[:3]):
        if label == "b":
            recalls = {t: np.sum((scores[:, j] >= t) & (gold[:, j] == 1)) / gold[:, j].sum() for t in set(scores[:, j].tolist())}
            assert thresholds[label] == max(t for t, r in recalls.items() if r >= 0.9)
            continue
        expected, f1 = _brute_force_f1_threshold(scores[:, j], gold[:, j] == 1)
        assert thresholds[label] == pytest.approx(expected)
        assert records[j]["achieved"] == pytest.approx(f1)
    assert thresholds["rare"] == 0.5 and records[3]["target"] == "default"


def test_an_unreachable_recall_target_is_recorded_as_unmet() -> None:
    from clintune.modeling.multilabel import tune_thresholds

    gold = np.array([[1], [1], [0]])
    thresholds, records = tune_thresholds(np.array([[0.9], [0.2], [0.4]]), gold, ["a"], {"a": 1.0}, min_positives=1)
    assert thresholds["a"] == 0.2 and records[0]["met"] is True
    _, unmet = tune_thresholds(np.array([[0.9], [0.2], [0.4]]), np.array([[0], [0], [0]]), ["a"], {"a": 0.9}, min_positives=1)
    assert unmet[0]["met"] is False


# -- metrics ------------------------------------------------------------------------------------------


def test_metrics_match_scikit_learn_and_a_hand_worked_example() -> None:
    from sklearn.metrics import f1_score, roc_auc_score

    from clintune.modeling.multilabel import at_k, f1_statistic, multilabel_metrics

    rng = np.random.default_rng(3)
    gold = (rng.random((80, 5)) < 0.35).astype(int)
    probabilities = np.clip(gold * 0.4 + rng.random((80, 5)) * 0.6, 0, 1)
    predicted = (probabilities >= 0.5).astype(int)
    metrics = multilabel_metrics(gold, probabilities, predicted, list("abcde"), {})
    for average in ("micro", "macro", "samples"):
        assert metrics[f"f1_{average}"] == pytest.approx(f1_score(gold, predicted, average=average, zero_division=0))
    assert metrics["subset_accuracy"] == pytest.approx(np.mean([np.array_equal(g, p) for g, p in zip(gold, predicted)]))
    assert metrics["per_class"]["c"]["roc_auc"] == pytest.approx(roc_auc_score(gold[:, 2], probabilities[:, 2]))
    resample = rng.integers(0, 80, 80)
    values = f1_statistic(gold, predicted)(resample)
    assert values["f1_micro"] == pytest.approx(f1_score(gold[resample], predicted[resample], average="micro", zero_division=0))
    assert values["f1_macro"] == pytest.approx(f1_score(gold[resample], predicted[resample], average="macro", zero_division=0))
    # by hand: note 1's two most probable labels are b (gold) and a (not); note 2's are c (gold) and b (not), and its
    # second gold label a is not among them. P@2 = (1/2 + 1/2) / 2; R@2 = (1/1 + 1/2) / 2.
    hand_gold = np.array([[0, 1, 0], [1, 0, 1]])
    hand_probabilities = np.array([[0.6, 0.9, 0.1], [0.2, 0.5, 0.8]])
    assert at_k(hand_gold, hand_probabilities, 2) == (pytest.approx(0.5), pytest.approx(0.75))


def test_a_long_note_gets_each_labels_maximum_over_its_windows() -> None:
    from clintune.modeling.decision import WindowLogits

    logits = np.array([[2.0, -3.0], [-1.0, 1.0], [0.0, 0.0]])  # note 0 in two windows, note 1 in one
    windows = WindowLogits(logits, np.array([0, 0, 1]), 2, multilabel=True)
    expected = 1 / (1 + np.exp(-np.array([[2.0, 1.0], [0.0, 0.0]])))
    np.testing.assert_allclose(windows.probabilities(), expected)


def test_loss_is_positive_weighted_binary_cross_entropy() -> None:
    import torch

    from clintune.data.labels import LabelEncoder, class_weights_from_config
    from clintune.training.trainer import PositiveWeightedBCE

    logits, targets, weights = np.array([[1.5, -0.5], [0.2, 2.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), [3.0, 0.5]
    loss = PositiveWeightedBCE(weights)({"logits": torch.tensor(logits)}, torch.tensor(targets))
    p = 1 / (1 + np.exp(-logits))
    expected = -(np.array(weights) * targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # under gradient accumulation the Trainer passes the (note, label) pairs of the whole accumulated batch, here
    # two micro-batches of this one: each micro-batch's loss is then half its mean, and their sum the mean of both
    halved = PositiveWeightedBCE(weights)({"logits": torch.tensor(logits)}, torch.tensor(targets), num_items_in_batch=2 * targets.size)
    assert float(halved) == pytest.approx(expected / 2, rel=1e-6)
    encoder = LabelEncoder(("a", "b"), "multilabel")
    # 10 notes: a in 2 (8 negatives), b in 5 -> 8/2 = 4 and 5/5 = 1; power 0.5 -> 2 and 1
    assert class_weights_from_config("balanced", encoder, {0: 2, 1: 5}, 0.5, n_examples=10) == pytest.approx([2.0, 1.0])


# -- the verbs ----------------------------------------------------------------------------------------


def test_trained_folder_codes_notes_and_reports_per_label(trained_models: dict[str, Path], tmp_path: Path) -> None:
    folder = trained_models["symptoms"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["validation"]["f1_micro"] > 0.6, "the findings are named in the notes: a broken loss stays near chance"
    assert {"f1_micro", "f1_macro", "f1_samples", "precision_at_5", "per_class"} <= set(metrics["test"])
    decision = json.loads((folder / "decision.json").read_text())
    assert len(decision["tuning"]) == 6 and set(decision["class_thresholds"]) <= {r["class"] for r in decision["tuning"]}
    card = (folder / "README.md").read_text()
    assert "| label | support | threshold |" in card and "Each label's threshold was chosen on" in card
    assert json.loads((folder / "config.json").read_text())["problem_type"] == "multi_label_classification"

    result = run_cli("predict", "--model", str(folder), "--text", "temp 39.1 C; vomited twice; Lot number recorded.", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)[0]
    assert set(record) == {"labels", "scores", "thresholds"} and list(record["scores"]) == record["labels"]
    assert list(record["scores"].values()) == sorted(record["scores"].values(), reverse=True)
    thresholds = {r["class"]: r["threshold"] for r in decision["tuning"]}
    assert all(score >= thresholds[label] == record["thresholds"][label] for label, score in record["scores"].items())

    report = tmp_path / "report"
    result = run_cli("eval", "--model", str(folder), "--data", "data/symptoms/test.csv", "--output", str(report))
    assert result.returncode == 0, result.stderr
    assert (report / "per_label_f1.png").is_file() and not (report / "confusion_matrix.png").exists()
    assert "threshold" in (report / "per_class.csv").read_text().splitlines()[0]


def test_pipeline_gives_the_same_probabilities(tmp_path: Path) -> None:
    """config.json says multi_label_classification, so transformers.pipeline applies a sigmoid as clintune does."""
    from transformers import pipeline

    from clintune.inference.predictor import Predictor

    out = tmp_path / "cls"
    result = run_cli("train", str(CONFIG), "--set", f"output.dir={out}", "--set", "model.pooling=cls", "--set", "training.epochs=1",
                     "--set", "evaluation.bootstrap_resamples=0")
    assert result.returncode == 0, result.stderr[-3000:]
    texts = ["fever of 102; Lot number recorded.", "persistent crying and a red rash on the trunk"]
    ours = Predictor.from_folder(out).class_probabilities(texts)
    theirs = pipeline("text-classification", model=str(out), top_k=None)(texts)
    classes = json.loads((out / "labels.json").read_text())["classes"]
    for row, answer in zip(ours, theirs):
        by_label = {item["label"]: item["score"] for item in answer}
        np.testing.assert_allclose([by_label[label] for label in classes], row, atol=1e-5)
        assert not np.isclose(sum(by_label.values()), 1.0), "sigmoids, not a softmax"


def test_iterative_stratification_spreads_every_label_over_the_folds() -> None:
    """Each label's notes per fold stay near count / folds: on average a third as far from it as a random
    assignment of the same fold sizes (mean over 200 draws), and the worst label nearer than random's worst."""
    from clintune.modeling.multilabel import iterative_stratification

    rng = np.random.default_rng(11)
    gold = (rng.random((400, 12)) < np.linspace(0.02, 0.4, 12)).astype(int)
    folds = 5

    def gaps(assignment: np.ndarray) -> np.ndarray:
        per_fold = np.array([gold[assignment == f].sum(axis=0) for f in range(folds)])
        return np.abs(per_fold - gold.sum(axis=0) / folds).max(axis=0)

    ours = iterative_stratification(gold, folds, seed=0)
    assert np.ptp(np.bincount(ours, minlength=folds)) <= 1
    random = [gaps(rng.permutation(np.arange(400) % folds)) for _ in range(200)]
    assert gaps(ours).mean() < np.mean([r.mean() for r in random]) / 3
    assert gaps(ours).max() < np.mean([r.max() for r in random])


def test_cv_refuses_folds_whose_training_part_lacks_a_label(tmp_path: Path) -> None:
    from clintune.data.readers import read_split
    from clintune.workflows.cv import fold_assignment

    rows = "".join(f"n{i},{'Rash' if i % 2 else 'Pyrexia'}\n" for i in range(30)) + "x,Cough\n"
    path = write(tmp_path / "t.csv", "Narrative,Symptoms\n" + rows)
    data = read_split(_config(tmp_path, path), str(path))
    with pytest.raises(ClintuneError, match="'Cough' has only 1 example"):
        fold_assignment(data, 3, 0)
    path = write(tmp_path / "u.csv", "Narrative,Symptoms\n" + rows + "y,Cough\n")
    assignment = fold_assignment(read_split(_config(tmp_path, path), str(path)), 3, 0)
    assert assignment[-1] != assignment[-2], "the two Cough notes go to different folds"


def test_two_threshold_sets_with_the_same_summary_are_told_apart() -> None:
    """Figures count as measured under the rule in force by its description: two sets of thresholds with the same
    count and rounded range must not describe alike."""
    from clintune.data.labels import LabelEncoder
    from clintune.modeling.decision import DecisionRule

    encoder = LabelEncoder(("a", "b", "c"), "multilabel")
    first = DecisionRule(class_thresholds={"a": 0.31, "b": 0.52, "c": 0.70}).describe(encoder)
    second = DecisionRule(class_thresholds={"a": 0.31, "b": 0.55, "c": 0.70}).describe(encoder)
    assert first.split(", set ")[0] == second.split(", set ")[0] and first != second


def test_a_label_seen_once_stays_on_the_training_side_of_the_split(tmp_path: Path) -> None:
    from clintune.data.readers import read_split
    from clintune.data.splits import stratified_split

    rows = "".join(f"n{i},{'Rash' if i % 2 else 'Pyrexia'}\n" for i in range(40)) + "".join(f"r{i},Rash;Rare{i}\n" for i in range(12))
    path = write(tmp_path / "t.csv", "Narrative,Symptoms\n" + rows)
    data = read_split(_config(tmp_path, path), str(path))
    train, validation = stratified_split(data, 0.25, 0)
    trained = {label for labels in train.labels or [] for label in labels}
    assert {f"Rare{i}" for i in range(12)} <= trained
    assert not {label for labels in validation.labels or [] for label in labels} - trained
