"""``clintune select``: which unlabelled notes to label next.

Uncertainty is checked against hand-worked values and scipy; the ranking against a brute-force sort of
``api.predict``'s probabilities; the spread against scikit-learn's TF-IDF similarities; the exclusion
of labelled notes against an exact and a near copy of training notes. The CLI runs on real files and
must write no note text where it does not belong.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli
from scipy import stats
from sklearn.feature_extraction.text import TfidfVectorizer

from clintune import api
from clintune.data.labels import LabelEncoder
from clintune.inference.selection import Candidate, MostUncertain, classification_uncertainty, ner_uncertainty
from clintune.modeling.decision import DecisionRule
from clintune.modeling.folder import read_model_folder

MARKER = "Qorvexil"
QUESTIONS = ["Are you allergic to any medications?", "What medications do you take?", "Any fever or chills?",
             "Does anyone in your family have heart disease?", "What brings you in today?", "Do you smoke or drink?"]
ANSWERS = ["{m} gives me a rash after {n} days.", "I take {n} mg of {m} every morning.", "No fever, but {m} cough for {n} weeks.",
           "My father had {m} at {n}.", "My knee hurt for {n} days after {m}.", "I drink {n} beers a week and smoke {m}."]


def pool_texts(seed: int = 0, n: int = 90) -> list[str]:
    """Notes unlike the training data's templates, built from templates of their own with variable details:
    many near copies of each other, as a hospital's notes are."""
    rng = random.Random(seed)
    words = ["ibuprofen", "aspirin", "lisinopril", "tobacco", "pollen", "asthma", "cancer", "surgery"]
    texts = []
    for i in range(n):
        q, a = rng.randrange(len(QUESTIONS)), rng.randrange(len(ANSWERS))
        texts.append(f"Doctor: {QUESTIONS[q]} Patient: {ANSWERS[a].format(m=rng.choice(words), n=rng.randint(2, 90))} "
                     f"{MARKER} {i}")
    return texts


def write_pool(path: Path, texts: list[str], column: str = "dialogue") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["note_id", column])
        writer.writerows([[f"N{i:03d}", text] for i, text in enumerate(texts)])
    return path


def read_picks(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- uncertainty, by hand ------------------------------------------------------------------


def test_uncertainty_by_hand_and_against_scipy() -> None:
    multiclass = LabelEncoder(["a", "b", "c"], "multiclass")
    p = np.array([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    assert classification_uncertainty(p, multiclass, DecisionRule()) == pytest.approx([0.8, 0.0, 1.0])
    assert classification_uncertainty(p, multiclass, DecisionRule(), "entropy") == pytest.approx(
        [stats.entropy(row, base=3) for row in p], abs=1e-9)
    binary = LabelEncoder(["neg", "pos"], "binary", positive="pos")
    q = np.array([[0.7, 0.3], [0.0, 1.0], [1.0, 0.0], [0.85, 0.15]])
    # threshold 0.3: at the threshold 1; certain either side 0; halfway down to 0 is 0.5
    assert classification_uncertainty(q, binary, DecisionRule(threshold=0.3)) == pytest.approx([1.0, 0.0, 0.0, 0.5])
    multilabel = LabelEncoder(["x", "y"], "multilabel")
    r = np.array([[0.9, 0.35], [0.05, 0.99]])
    rule = DecisionRule(class_thresholds={"x": 0.5, "y": 0.3})
    # the label nearest its threshold counts: y (0.05 over 0.3 of 0.7) in the first row, x (0.45 under 0.5) in the second
    assert classification_uncertainty(r, multilabel, rule) == pytest.approx([1 - 0.05 / 0.7, 1 - 0.45 / 0.5])
    assert ner_uncertainty([0.99, 0.6, 0.95]) == pytest.approx(0.4) and ner_uncertainty([]) == 0.0


def test_the_heap_keeps_the_most_uncertain_whatever_the_order() -> None:
    values = np.random.default_rng(3).random(500).round(2)  # many ties
    held = MostUncertain(25)
    for order, value in enumerate(values):
        held.offer(Candidate(float(value), order, order, None, "", []))
    expected = sorted(range(500), key=lambda i: (-values[i], i))[:25]
    assert [c.row for c in held.ranked()] == expected


# -- the verb -----------------------------------------------------------------------------


def test_the_picks_are_the_most_uncertain_notes_in_any_chunking(trained_models: dict[str, Path], tmp_path: Path) -> None:
    folder = trained_models["section_header"]
    texts = pool_texts()
    pool = write_pool(tmp_path / "pool.csv", texts)
    model = read_model_folder(folder)
    probabilities = np.array([[p.probabilities[c] for c in model.encoder.classes] for p in api.predict(folder, texts)])
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    margin = 1 - (top_two[:, 1] - top_two[:, 0])
    expected = sorted(range(len(texts)), key=lambda i: (-margin[i], i))[:12]
    for chunk_size in (1000, 7):
        chosen = api.select(folder, pool, tmp_path / f"picks-{chunk_size}.csv", k=12, spread=False, exclude_training_data=False,
                            id_column="note_id", chunk_size=chunk_size)
        assert [pick["row"] for pick in chosen.picks] == [i + 2 for i in expected]  # csv rows count the header as row 1
        assert [pick["note_id"] for pick in chosen.picks] == [f"N{i:03d}" for i in expected]
        assert [pick["uncertainty"] for pick in chosen.picks] == pytest.approx([margin[i] for i in expected], abs=1e-5)
    assert read_picks(tmp_path / "picks-7.csv") == read_picks(tmp_path / "picks-1000.csv")


def mean_pairwise_cosine(texts: list[str]) -> float:
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), sublinear_tf=True).fit_transform(texts)
    similarity = (vectors @ vectors.T).toarray()
    return float(np.mean([similarity[i, j] for i, j in itertools.combinations(range(len(texts)), 2)]))


def test_spread_picks_are_less_alike_than_plain_top_k(trained_models: dict[str, Path], tmp_path: Path) -> None:
    folder = trained_models["section_header"]
    texts = pool_texts(seed=1, n=120)
    pool = write_pool(tmp_path / "pool.csv", texts)
    plain = api.select(folder, pool, tmp_path / "plain.csv", k=10, spread=False, exclude_training_data=False)
    spread = api.select(folder, pool, tmp_path / "spread.csv", k=10, exclude_training_data=False)
    picked = {name: [texts[pick["row"] - 2] for pick in run.picks] for name, run in (("plain", plain), ("spread", spread))}
    assert len(set(picked["spread"])) == 10
    assert mean_pairwise_cosine(picked["spread"]) < mean_pairwise_cosine(picked["plain"])
    assert all(pick["similarity"] <= 0.5 for pick in spread.picks)


def test_labelled_notes_and_their_near_copies_are_never_picked(trained_models: dict[str, Path], tmp_path: Path) -> None:
    folder = trained_models["section_header"]
    with open(read_model_folder(folder).config.data.train, newline="", encoding="utf-8") as handle:
        training = [row["dialogue"] for row in csv.DictReader(handle)]
    exact = training[3].upper().replace(" ", "  ")  # equal once case and spaces are folded
    near = max(training, key=len) + " Mild."  # one word more: a near copy (cosine 0.9 or more)
    labelled_elsewhere = pool_texts(seed=9, n=3)
    texts = [exact, near, *labelled_elsewhere, *pool_texts(seed=2, n=20)]
    pool = write_pool(tmp_path / "pool.csv", texts)
    write_pool(tmp_path / "labelled.csv", labelled_elsewhere)
    everything = api.select(folder, pool, tmp_path / "all.csv", k=len(texts), spread=False, exclude_training_data=False)
    assert {pick["row"] for pick in everything.picks} >= {2, 3, 4}  # without the check they would be picked
    chosen = api.select(folder, pool, tmp_path / "picks.csv", k=len(texts), spread=False, exclude=[tmp_path / "labelled.csv"])
    rows = {pick["row"] for pick in chosen.picks}
    assert not rows & {2, 3, 4, 5, 6} and len(rows) == 20
    assert chosen.excluded == 5
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), sublinear_tf=True).fit([*training, *texts])
    picked = vectors.transform([texts[row - 2] for row in rows])
    assert (picked @ vectors.transform(training).T).max() < 0.9


def test_the_cli_writes_ids_and_scores_and_owner_only_label_studio_tasks(trained_models: dict[str, Path], tmp_path: Path) -> None:
    folder = trained_models["ner"]
    texts = [f"{MARKER} has cystic fibrosis 🙂 ,\r\nand huntington disease runs in family {i} ." for i in range(6)]
    texts += [f"Screening {i} for type 2 diabetes and ataxia telangiectasia in {MARKER} carriers ." for i in range(6)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"doc{i}", "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    picks, tasks = tmp_path / "picks.jsonl", tmp_path / "tasks.json"
    result = run_cli("select", "--model", str(folder), "--input", str(pool), "--k", "4", "--output", str(picks), "--id-column", "id",
                     "--label-studio-tasks", str(tasks), "--no-exclude-training-data")
    assert result.returncode == 0, result.stderr
    assert "4 of 12 note(s) picked" in result.stdout
    assert MARKER not in result.stdout + result.stderr + picks.read_text()
    records = [json.loads(line) for line in picks.read_text().splitlines()]
    assert [r["rank"] for r in records] == [1, 2, 3, 4]
    assert all(set(r) == {"line", "id", "rank", "uncertainty", "similarity"} for r in records)
    assert stat.S_IMODE(tasks.stat().st_mode) == 0o600
    imported = json.loads(tasks.read_text(encoding="utf-8"))
    version = read_model_folder(folder).version()
    for record, task in zip(records, imported):
        text = task["data"]["text"]
        assert text == texts[record["line"] - 1] and task["data"]["clintune_id"] == record["id"]
        [prediction] = task["predictions"]
        assert prediction["model_version"] == version
        assert prediction["score"] == pytest.approx(1 - record["uncertainty"], abs=1e-5)
        expected = api.predict(folder, [text])[0]
        assert [(r["value"]["start"], r["value"]["end"]) for r in prediction["result"]] == [(e.start, e.end) for e in expected]
        for item in prediction["result"]:
            assert item["value"]["text"] == text[item["value"]["start"]:item["value"]["end"]]


@pytest.mark.parametrize(("rows", "arguments", "message"), [
    (["a real note about a rash", "", "another note"], [], "1 empty text(s)"),
    (["a note"], ["--k", "0"], "--k"),
    (["a note"], ["--output", "{tmp}/picks.txt"], "name it .csv or .jsonl"),
    (["a note"], ["--output", "{tmp}/pool.csv"], "--output"),
    (["a note"], ["--label-studio-tasks", "{tmp}/tasks.csv"], "name it .json"),
    (["a note"], ["--exclude", "{tmp}/missing.csv"], "missing.csv"),
    (["a note"], ["--id-column", "row"], "clashes with the picks' field"),
])
def test_bad_input_is_a_clear_error_and_nothing_is_written(trained_models: dict[str, Path], tmp_path: Path, rows: list[str],
                                                         arguments: list[str], message: str) -> None:
    pool = write_pool(tmp_path / "pool.csv", rows)
    options = {"--output": str(tmp_path / "picks.csv"), "--k": "2"}
    extra: list[str] = []
    for name, value in zip(arguments[::2], arguments[1::2]):
        value = value.format(tmp=tmp_path)
        if name in options:
            options[name] = value
        else:
            extra += [name, value]
    result = run_cli("select", "--model", str(trained_models["section_header"]), "--input", str(pool),
                     *itertools.chain.from_iterable(options.items()), *extra, "--no-exclude-training-data")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "picks.csv").exists() and not (tmp_path / "picks.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.csv"]


def test_a_missing_training_file_is_named_with_the_fix(trained_models: dict[str, Path], tmp_path: Path) -> Any:
    import shutil

    import yaml

    copy = tmp_path / "model"
    shutil.copytree(trained_models["diagnosis"], copy)
    config = yaml.safe_load((copy / "clintune.yaml").read_text())
    config["data"]["train"] = str(tmp_path / "moved.csv")
    (copy / "clintune.yaml").write_text(yaml.safe_dump(config))
    pool = write_pool(tmp_path / "pool.csv", ["Patient reports a cough."], column="text")
    result = run_cli("select", "--model", str(copy), "--input", str(pool), "--k", "1", "--output", str(tmp_path / "p.csv"))
    assert result.returncode == 2 and "moved.csv" in result.stderr and "--exclude" in result.stderr


def test_an_onnx_folder_picks_the_same_notes(trained_models: dict[str, Path], tmp_path: Path) -> None:
    """Spread compares texts, not model states, so it works on an exported folder as on the PyTorch one."""
    pytest.importorskip("onnxruntime")
    folder = trained_models["section_header"]
    exported = api.export(folder, tmp_path / "onnx").output_dir
    pool = write_pool(tmp_path / "pool.csv", pool_texts(seed=4, n=60))
    runs = [api.select(model, pool, tmp_path / f"{name}.csv", k=8, exclude_training_data=False)
            for name, model in (("pytorch", folder), ("onnx", exported))]
    assert [p["row"] for p in runs[0].picks] == [p["row"] for p in runs[1].picks]
    assert [p["uncertainty"] for p in runs[1].picks] == pytest.approx([p["uncertainty"] for p in runs[0].picks], abs=1e-4)
